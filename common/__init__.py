"""What the ingress and the workers both need, declared once: settings, logging, retries.

The bottom layer of twinctl's own packages: it imports none of them (``ingress``,
``tasks``, ``scenario_builder``, ``modellib``, ``instances`` and ``twinctl`` may all
import it).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twinctl")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
