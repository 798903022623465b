"""``patchscope``: Patchscopes and their evaluations (to be written; see issue 3)."""

from __future__ import annotations


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
