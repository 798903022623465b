"""The one progress bar of every long loop: on stderr, and only where someone watches it.

A bar is drawn when the caller asks for progress, stderr is a terminal and there is more than one
step: a log file or a CI job gets no bar frames (carriage returns repeated hundreds of times),
and a one-step loop gets no bar that says nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["bar", "shown"]


def shown(progress: bool, steps: int | None = None) -> bool:
    """Whether a bar of ``steps`` steps is drawn for a caller that asked for ``progress``."""
    return bool(progress) and sys.stderr.isatty() and (steps is None or steps > 1)


def bar(iterable: Iterable | None = None, *, progress: bool = True, total: int | None = None, **options: Any):
    """``tqdm(iterable, total=..., **options)``, disabled unless :func:`shown`."""
    from tqdm.auto import tqdm

    steps = total
    if steps is None and hasattr(iterable, "__len__"):
        steps = len(iterable)  # type: ignore[arg-type]
    return tqdm(iterable, total=total, disable=not shown(progress, steps), **options)
