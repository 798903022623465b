"""The papers' headline claims beside what layerscope measures on a model.

Each method package lists its paper's claims in ``claims.py`` as ``CLAIMS``, a list of
:class:`Claim`: the claim as the paper states it, the command that reproduces the measurement, and
a function ``measure(model, scale) -> {"measured": text, "holds": bool, "value": float}`` that
calls the method's own API (``scale="quick"`` for the demo and tests, ``"full"`` for a real run).
:func:`claims_table` runs them into tidy rows; ``layerscope claims`` prints them and the demo
report has them as its "Claims" section.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from layerscope.results.contract import tidy

SCALES = ("quick", "full")

__all__ = ["SCALES", "Claim", "claims_table"]


@dataclass(frozen=True)
class Claim:
    """One headline claim: ``paper``, the ``claim`` in words, a ``command`` and its ``measure``."""

    paper: str
    claim: str
    command: str
    measure: Callable[[Any, str], dict]


def claims_table(
    model, claims: Sequence[Claim], scale: str = "quick", progress: Callable | None = None
) -> pd.DataFrame:
    """One row per claim: ``paper, claim, measured, holds, value, command`` (``method = "claims"``)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    rows = []
    for claim in claims:
        if progress is not None:
            progress(claim)
        result = claim.measure(model, scale)
        rows.append(
            {
                "paper": claim.paper,
                "claim": claim.claim,
                "measured": result["measured"],
                "holds": bool(result["holds"]),
                "value": float(result["value"]),
                "command": claim.command,
            }
        )
    return tidy(pd.DataFrame(rows), model=model, method="claims", scale=scale)
