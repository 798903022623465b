"""``sweep``: activation-patching sweep (to be written; see issue 6)."""

from __future__ import annotations


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
