"""The results contract: every method returns tidy rows, one measurement each.

Every row has ``model`` (the model's name) and ``method`` (the method that made the reading),
then the measurement in named columns: ``layer`` (0-based block index; Layer by Layer's ``depth``
counts the embedding output as 0), ``position`` (token index in the prompt), ``metric`` and
``value`` where a method measures several things, plus the method's own keys (``manipulation``,
``source_layer``, ``loops``, ...). Baselines (clean and corrupt values, the unswitched answer) are
columns or rows, never only ``DataFrame.attrs``, so ``--json`` and ``--save`` carry them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from layerscope.errors import ResultError

#: columns every row of every method has, first in every table
REQUIRED = ("model", "method")

__all__ = ["REQUIRED", "check_rows", "model_name", "tidy"]


def model_name(model: Any) -> str:
    """``model.name`` for a loaded model, the string itself for a name."""
    return model if isinstance(model, str) else str(getattr(model, "name", model))


def tidy(table: pd.DataFrame, *, model: Any, method: str, **baselines: Any) -> pd.DataFrame:
    """``table`` with ``model`` and ``method`` as its first columns, and ``baselines`` as constant columns.

    A ``model`` or ``method`` column already there is kept (several models side by side; the
    Patchscopes evaluations, whose rows name the readout that made them: ``patchscope``,
    ``logit_lens``, ``tuned_lens``).
    """
    out = table.copy()
    for name, value in baselines.items():
        out[name] = [value] * len(out) if isinstance(value, list | dict | tuple) else value
    if "method" not in out.columns:
        out.insert(0, "method", method)
    if "model" not in out.columns:
        out.insert(0, "model", model_name(model))
    order = [*REQUIRED, *[c for c in out.columns if c not in REQUIRED]]
    return out[order]


def check_rows(table: pd.DataFrame | list[Mapping[str, Any]]) -> None:
    """Raise :class:`ResultError` unless every row has the required columns, filled."""
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ResultError(f"rows without {', '.join(missing)}: every method's rows name the model and the method")
    empty = [c for c in REQUIRED if frame[c].isna().any()]
    if empty:
        raise ResultError(f"rows with an empty {', '.join(empty)}")
