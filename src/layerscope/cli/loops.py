"""``loops``: looped layers, self-verification, concept injection (to be written; see issue 5)."""

from __future__ import annotations


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
