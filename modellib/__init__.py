"""The model library: models with declared, unit-carrying variables and their registry.

A plain library: no MQTT, Celery or Redis here, so a notebook can import it.
"""

from . import models as _models  # noqa: F401  (registers the models)
from .base import Discrete, G, Input, Model, Output, Param, State, Variable
from .errors import (
    CodedError,
    InvalidArgument,
    MissingArgument,
    ModelLibError,
    ModelRuntimeError,
    UnknownFunction,
    UnknownModel,
)
from .registry import describe_models, get_model, model_names, register

__all__ = [
    "Discrete", "G", "Input", "Model", "Output", "Param", "State", "Variable",
    "CodedError", "InvalidArgument", "MissingArgument", "ModelLibError",
    "ModelRuntimeError", "UnknownFunction", "UnknownModel",
    "describe_models", "get_model", "model_names", "register",
]
