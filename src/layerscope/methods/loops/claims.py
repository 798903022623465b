"""Loop as a Bridge's headline claims (arXiv 2601.10242), measured through this package's API."""

from __future__ import annotations

import pandas as pd

from layerscope.results.claims import Claim

PAPER = "Loop as a bridge"
_SUMMARIES: dict[tuple[int, str], pd.DataFrame] = {}


def loop_summary(model, scale: str) -> pd.DataFrame:
    """:func:`verification_summary` of arithmetic self-verification at 1 and 2 loops (quick) or 1-4
    (full); computed once per model and scale for both claims."""
    from layerscope.methods.loops import load_oracle_task, self_verification, verification_summary

    key = (id(model), scale)
    if key not in _SUMMARIES:
        quick = scale == "quick"
        task = load_oracle_task("arithmetic", model, n=24 if quick else 200)
        L = model.n_layers
        table = self_verification(
            model,
            task,
            loops=(1, 2) if quick else (1, 2, 3, 4),
            probe_layers=sorted({L // 2, L - 1}) if quick else None,
            folds=3 if quick else 5,
            progress=False,
        )
        _SUMMARIES.clear()  # one model at a time
        _SUMMARIES[key] = verification_summary(table)
    return _SUMMARIES[key]


def measure_ordering(model, scale: str) -> dict:
    summary = loop_summary(model, scale)
    tp, sv, rr = (float(summary[c].max()) for c in ("P_TP", "P_SV", "sup_P_RR"))
    return {
        "measured": f"sup P_TP {tp:.3f}, sup P_SV {sv:.3f}, sup P_RR {rr:.3f} (arithmetic)",
        "holds": tp <= sv <= rr,
        "value": rr - tp,
    }


def measure_gap_narrows(model, scale: str) -> dict:
    summary = loop_summary(model, scale).sort_values("loops")
    gaps = (summary["sup_P_RR"] - summary["P_SV"]).tolist()
    loops = summary["loops"].tolist()
    return {
        "measured": "P_RR - P_SV gap: "
        + ", ".join(f"{g:+.3f} at {n} loop(s)" for g, n in zip(gaps, loops, strict=True)),
        "holds": gaps[-1] < gaps[0],
        "value": gaps[-1] - gaps[0],
    }


CLAIMS = [
    Claim(
        PAPER,
        "sup P_TP <= sup P_SV <= sup P_RR",
        "layerscope loop verify --task arithmetic --loops 1,2,3,4",
        measure_ordering,
    ),
    Claim(
        PAPER,
        "more loops narrow the P_SV - P_RR gap",
        "layerscope loop verify --task arithmetic --loops 1,2,3,4",
        measure_gap_narrows,
    ),
]
