"""Patchscopes' headline claims (Ghandeharioun et al., ICML 2024), measured through this package's API."""

from __future__ import annotations

from layerscope.results.claims import Claim

PAPER = "Patchscopes"


def mid_layers(n_layers: int, step: int) -> list[int]:
    """From mid depth up to, not including, the last layer (where every method is 1.0)."""
    return list(range(n_layers // 2, n_layers - 1, step)) or [n_layers // 2]


def measure_identity_beats_logit_lens(model, scale: str) -> dict:
    from layerscope.datasets import corpus_split
    from layerscope.methods.patchscopes.evaluate import eval_next_token

    texts = corpus_split()[1][: 8 if scale == "quick" else None]
    step = 3 if scale == "quick" else 1
    layers = mid_layers(model.n_layers, step)
    table = eval_next_token(model, texts, ["patchscope", "logit_lens"], 4 if scale == "quick" else 6, layers=layers)
    means = table.groupby("method")["precision_at_1"].mean()
    gap = float(means["patchscope"] - means["logit_lens"])
    return {
        "measured": f"mean Precision@1 from mid depth: token identity {means['patchscope']:.3f}, "
        f"logit lens {means['logit_lens']:.3f}",
        "holds": gap > 0,
        "value": gap,
    }


def measure_patchscope_beats_probe(model, scale: str) -> dict:
    from layerscope.methods.patchscopes.attributes import eval_attributes

    relations = ["country_capital", "country_currency", "country_language"] if scale == "quick" else None
    layers = f"::{10 if scale == 'quick' else 3}"
    result = eval_attributes(
        model,
        relations,
        limit=4 if scale == "quick" else 20,
        source_layers=layers,
        target_layers=layers,
        max_new_tokens=8 if scale == "quick" else 20,
    )
    summary = result["summary"]
    wins = int((summary["winner"] == "patchscope").sum())
    return {
        "measured": f"the Patchscope beats the probe on {wins} of {len(summary)} relations (paper: 6 of 12)",
        "holds": wins >= len(summary) / 2,
        "value": wins / len(summary),
    }


CLAIMS = [
    Claim(
        PAPER,
        "token identity beats the logit lens from mid depth",
        "layerscope eval next-token --methods patchscope,logit-lens",
        measure_identity_beats_logit_lens,
    ),
    Claim(
        PAPER,
        "the Patchscope beats the probe on attribute extraction (6 of 12 tasks)",
        "layerscope eval attributes",
        measure_patchscope_beats_probe,
    ),
]
