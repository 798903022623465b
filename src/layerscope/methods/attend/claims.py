"""Attend first's headline claims (Ben Artzy & Schwartz, 2024), measured through this package's API."""

from __future__ import annotations

from layerscope.results.claims import Claim

PAPER = "Attend first"


def measure_top_layers_barely_hurt(model, scale: str) -> dict:
    from layerscope.methods.attend import stable_from, sweep_task, task_items

    items = task_items("capitals", limit=8 if scale == "quick" else 100)
    step = 3 if scale == "quick" else 1
    table = sweep_task(model, items, ["random"], f"0:{model.n_layers}:{step}", match="first-token", progress=False)
    layer = stable_from(table)["random"]
    share = None if layer is None else 1.0 - layer / model.n_layers
    return {
        "measured": "random previous tokens: accuracy within 10% of clean "
        + (f"from layer {layer} of {model.n_layers} (top {share:.0%})" if layer is not None else "at no layer"),
        "holds": share is not None and share >= 0.3,
        "value": share if share is not None else 0.0,
    }


def measure_switch_ignored_top_third(model, scale: str) -> dict:
    from layerscope.methods.attend import SWITCH_EXAMPLE, ignored_from, switch

    example = SWITCH_EXAMPLE
    layers = f"0:{model.n_layers}:{3 if scale == 'quick' else 1}"
    table = switch(
        model,
        example["prompt"],
        example["position"],
        example["source"],
        example["source_position"],
        list(example["answers"]),
        layers,
    )
    layer = ignored_from(table)
    share = None if layer is None else 1.0 - layer / model.n_layers
    return {
        "measured": (
            f"switch France -> Italy ignored from layer {layer} of {model.n_layers} (top {share:.0%})"
            if layer is not None
            else "the switch is followed up to the last layer"
        ),
        "holds": share is not None and share >= 1 / 3,
        "value": share if share is not None else 0.0,
    }


CLAIMS = [
    Claim(
        PAPER,
        "manipulating the previous tokens from the top 30-50% of layers barely hurts",
        "layerscope attend sweep --task capitals --manipulation random",
        measure_top_layers_barely_hurt,
    ),
    Claim(
        PAPER,
        "the switch is ignored in the top third of the layers",
        "layerscope attend switch (the Spain / France / Italy example)",
        measure_switch_ignored_top_third,
    ),
]
