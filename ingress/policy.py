"""The deployment policy: which commands, models, functions and modes this controller runs.

Set by ``TWIN_ALLOW_COMMANDS``, ``TWIN_ALLOW_MODELS``, ``TWIN_ALLOW_FUNCTIONS`` and
``TWIN_ALLOW_MODES`` (comma-separated; unset: everything). :meth:`Policy.from_settings` checks
that every listed name exists. Anything else is refused with
``not_permitted`` and the path of the field that names it, before any work; ``describe``
and the retained status list only what is allowed.

Names are looked up only in the registries (plain dictionaries of the classes that
were registered at import): a message never names a module, an attribute or code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from common.settings import Settings, SettingsError
from modellib import model_names
from modellib.errors import did_you_mean
from modellib.functions import function_names
from scenario_builder import SUPPORTED_MODES

from .commands import COMMANDS
from .errors import NotPermitted

__all__ = ["Policy"]


def _listed(names: Iterable[str]) -> str:
    return ", ".join(names) or "nothing"


@dataclass(frozen=True)
class Policy:
    """What this deployment allows (``None``: everything of that kind)."""

    commands: frozenset[str] | None = None
    models: frozenset[str] | None = None
    functions: frozenset[str] | None = None
    modes: frozenset[str] | None = None
    admins: frozenset[str] | None = None
    """orchestrators that may change instances and steer any job (None: see
    :meth:`check_instances` and :meth:`check_steering`)"""

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        """The policy of ``TWIN_ALLOW_*``; a name that is not a real command, model,
        function or mode is :class:`SettingsError` (one line, with a "did you mean")."""
        def opt(variable: str, kind: str, names: tuple[str, ...] | None,
                known: Iterable[str]) -> frozenset[str] | None:
            if names is None:
                return None
            known = list(known)
            for n in names:
                if n not in known:
                    hint = did_you_mean(n, known)
                    raise SettingsError(
                        f"{variable}: {n!r} is not a {kind} of this controller"
                        f"{hint if 'did you mean' in hint else ''}; known {kind}s: "
                        f"{', '.join(known)}")
            return frozenset(names)

        return cls(
            commands=opt("TWIN_ALLOW_COMMANDS", "command", s.allow_commands, COMMANDS),
            models=opt("TWIN_ALLOW_MODELS", "model", s.allow_models, model_names()),
            functions=opt("TWIN_ALLOW_FUNCTIONS", "function", s.allow_functions,
                          function_names()),
            modes=opt("TWIN_ALLOW_MODES", "mode", s.allow_modes, SUPPORTED_MODES),
            admins=None if s.admin_clients is None else frozenset(s.admin_clients))

    # ----- what is allowed, in the registries' order -----------------------------
    def allowed_commands(self) -> list[str]:
        return [c for c in COMMANDS if self.commands is None or c in self.commands]

    def allowed_models(self) -> list[str]:
        return [m for m in model_names() if self.models is None or m in self.models]

    def allowed_functions(self) -> list[str]:
        return [f for f in function_names() if self.functions is None or f in self.functions]

    def allowed_modes(self) -> list[str]:
        return [m for m in SUPPORTED_MODES if self.modes is None or m in self.modes]

    # ----- checks (a name that is not a real one is left to the libraries) -------
    def check_model(self, name: Any, path: str, *, element: str | None = None,
                    instance: str | None = None) -> None:
        if self.models is None or not isinstance(name, str) or name in self.models \
                or name not in model_names():
            return
        what = f"element {element!r} uses model {name!r}" if element else f"model {name!r}"
        if instance:
            what += f" (the model of instance {instance!r})"
        raise NotPermitted(
            f"{what}, which this controller's deployment does not run; allowed models: "
            f"{_listed(self.allowed_models())}", path=path)

    def check_function(self, name: Any, path: str) -> None:
        if self.functions is None or not isinstance(name, str) or name in self.functions \
                or name not in function_names():
            return
        raise NotPermitted(
            f"function {name!r} is not permitted on this controller; its deployment allows: "
            f"{_listed(self.allowed_functions())}", path=path)

    def check_mode(self, mode: Any, path: str) -> None:
        if self.modes is None or not isinstance(mode, str) or mode in self.modes \
                or mode not in SUPPORTED_MODES:
            return
        raise NotPermitted(
            f"mode {mode!r} is not permitted on this controller; its deployment runs: "
            f"{_listed(self.allowed_modes())}", path=path)

    def check_instances(self, client: str, cmd: str) -> None:
        """``put_instance``/``delete_instance``: anyone's, unless admins are named."""
        if self.admins is None or client in self.admins:
            return
        raise NotPermitted(
            f"{cmd} changes the instance library, which on this controller only "
            f"{_listed(sorted(self.admins))} may do (TWIN_ADMIN_CLIENTS); this command comes "
            f"from {client!r}", path="cmd")

    def check_steering(self, client: str, cmd: str, job: dict[str, Any]) -> None:
        """``stop``/``set`` of a job: by the orchestrator that started it, or an admin."""
        owner = job.get("client")
        if not owner or owner == client or (self.admins is not None
                                                and client in self.admins):
            return
        admins = (f", or by {_listed(sorted(self.admins))} (TWIN_ADMIN_CLIENTS)"
                  if self.admins else "")
        raise NotPermitted(
            f"job {job.get('id')!r} was started by another orchestrator; `{cmd}` of a job is "
            f"taken only from the orchestrator that started it{admins}; this command comes "
            f"from {client!r} (docs/protocol.md, 'Who may do what')", path="target")

    def check_scenario(self, scenario: Any, *, path: str = "scenario",
                       template: str | None = None) -> None:
        """Mode, the elements' models (after the instances are resolved) and ``post``
        functions of a scenario. A malformed part is left for the scenario checks.
        For a template run the path is ``template`` (the orchestrator wrote no scenario)."""
        if not isinstance(scenario, dict):
            return
        try:
            self.check_mode(scenario.get("mode", "static"), f"{path}.mode")
            elements = scenario.get("elements")
            for name, el in (elements.items() if isinstance(elements, dict) else ()):
                if isinstance(el, dict):
                    inst = el.get("instance")
                    self.check_model(el.get("model"), f"{path}.elements.{name}.model",
                                     element=name,
                                     instance=inst if isinstance(inst, str) else None)
            post = scenario.get("post")
            for i, call in enumerate(post if isinstance(post, list) else ()):
                if isinstance(call, dict):
                    self.check_function(call.get("function"), f"{path}.post[{i}].function")
        except NotPermitted as exc:
            if template is None:
                raise
            raise NotPermitted(f"template {template!r}: {exc.message}",
                                      path="template") from None

    def check_instance(self, data: Any, path: str = "instance") -> None:
        """``put_instance`` of a model this deployment does not run is refused."""
        if isinstance(data, dict):
            self.check_model(data.get("model"), f"{path}.model")

    # ----- what describe and the status show ----------------------------------------
    def allows_scenario(self, scenario: Any, model_of: Callable[[str], str | None]) -> bool:
        """Whether a (template's) scenario uses only allowed things; ``model_of`` gives
        the model of an instance id."""
        try:
            resolved = scenario
            if isinstance(scenario, dict) and isinstance(scenario.get("elements"), dict):
                resolved = {**scenario, "elements": {
                    n: ({**el, "model": el.get("model") or model_of(str(el.get("instance")))}
                        if isinstance(el, dict) else el)
                    for n, el in scenario["elements"].items()}}
            self.check_scenario(resolved)
        except NotPermitted:
            return False
        return True

    def describe(self, description: dict[str, Any],
                 templates: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """``describe``'s answer with only what is allowed: models, functions, the
        instances of allowed models, and templates (given in full in ``templates``)
        that use only allowed models, functions and modes."""
        if self.models is None and self.functions is None and self.modes is None:
            return description
        out = dict(description)
        out["models"] = {k: v for k, v in description.get("models", {}).items()
                         if self.models is None or k in self.models}
        out["functions"] = {k: v for k, v in description.get("functions", {}).items()
                            if self.functions is None or k in self.functions}
        instances = description.get("instances", {})
        out["instances"] = {k: v for k, v in instances.items()
                            if self.models is None or v.get("model") in self.models}
        if templates is not None:
            def model_of(iid: str) -> str | None:
                inst = instances.get(iid)
                return inst.get("model") if isinstance(inst, dict) else None

            out["templates"] = {
                k: v for k, v in description.get("templates", {}).items()
                if k in templates and self.allows_scenario(templates[k].get("scenario"),
                                                           model_of)}
        return out

    def instance_ids(self, instances: dict[str, dict[str, Any]]) -> list[str]:
        return sorted(k for k, v in instances.items()
                      if self.models is None or v.get("model") in self.models)
