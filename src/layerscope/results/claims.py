"""The papers' headline claims beside what layerscope measures on a model.

Each method package lists its paper's claims in ``claims.py`` as ``CLAIMS``, a list of
:class:`Claim`: the claim as the paper states it, the command that reproduces the measurement, and
a function ``measure(model, scale) -> {"measured": text, "holds": bool, "value": float}`` that
calls the method's own API (``scale="quick"`` for the demo and tests, ``"full"`` for a real run).
:func:`claims_table` runs them into tidy rows; ``layerscope claims`` prints them and the demo
report has them as its "Claims" section. A claim lists the model ``kinds`` it applies to
(``"causal"``, ``"encoder"``); :func:`claims_across` runs the table over several models (an encoder
beside the decoders) and adds, per claim measured on more than one model, a row for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from layerscope.results.contract import tidy

SCALES = ("quick", "full")

__all__ = ["ALL_MODELS", "SCALES", "Claim", "claims_across", "claims_table"]

ALL_MODELS = "all models"
"""The ``model`` of :func:`claims_across`'s summary rows."""


@dataclass(frozen=True)
class Claim:
    """One headline claim: ``paper``, the ``claim`` in words, a ``command``, its ``measure`` and the
    model ``kinds`` it is measured on (``model.kind``: ``"causal"`` or ``"encoder"``)."""

    paper: str
    claim: str
    command: str
    measure: Callable[[Any, str], dict]
    kinds: tuple[str, ...] = ("causal",)


def claims_table(
    model, claims: Sequence[Claim], scale: str = "quick", progress: Callable | None = None
) -> pd.DataFrame:
    """One row per claim: ``paper, claim, measured, holds, value, command`` (``method = "claims"``).

    Claims whose ``kinds`` do not include ``model.kind`` are left out (an encoder has no next token).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    rows = []
    for claim in claims:
        if getattr(model, "kind", "causal") not in claim.kinds:
            continue
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
    columns = ["paper", "claim", "measured", "holds", "value", "command"]
    return tidy(pd.DataFrame(rows, columns=columns), model=model, method="claims", scale=scale)


def claims_across(
    models: Sequence[Any],
    claims: Sequence[Claim],
    scale: str = "quick",
    progress: Callable | None = None,
    load: Callable[[str], Any] | None = None,
) -> pd.DataFrame:
    """:func:`claims_table` for every model, then one ``model = "all models"`` row per claim measured on >= 2.

    ``models``: loaded models, or names that ``load`` (default :func:`layerscope.load`) loads one at a
    time (each is released before the next loads). A summary row holds when the claim holds on every
    model; its ``value`` is the share of models on which it holds, its ``measured`` names them.
    """
    if not models:
        raise ValueError("no model given")
    if load is None:
        from layerscope.models.model import load
    tables = []
    for entry in models:
        model = load(entry) if isinstance(entry, str) else entry
        tables.append(claims_table(model, claims, scale, progress))
        del model
    table = pd.concat(tables, ignore_index=True)
    summary = []
    for (paper, claim), group in table.groupby(["paper", "claim"], sort=False):
        if len(group) < 2:
            continue
        held = group.loc[group["holds"], "model"].tolist()
        summary.append(
            {
                "model": ALL_MODELS,
                "method": "claims",
                "paper": paper,
                "claim": claim,
                "measured": f"holds on {len(held)} of {len(group)} models" + (f" ({', '.join(held)})" if held else ""),
                "holds": len(held) == len(group),
                "value": len(held) / len(group),
                "command": group["command"].iloc[0],
                "scale": scale,
            }
        )
    return pd.concat([table, pd.DataFrame(summary, columns=table.columns)], ignore_index=True)
