"""The one error of the common layer.

Tree::

    ValueError
    └── SettingsError   a setting has a value that cannot work (one line: the variable,
                        the value and what would be right)
"""

from __future__ import annotations

__all__ = ["SettingsError"]


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message is one line."""
