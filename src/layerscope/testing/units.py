"""Work units for the distributed tests and benchmarks (importable by Ray workers by name)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from layerscope.distributed import Unit
from layerscope.errors import LayerscopeError
from layerscope.testing import tiny_model

PROMPTS = ["the capital of france is", "hello world", "what is the capital of spain ?", "the cat and the dog"]


def tiny_spec(arch: str = "llama"):
    """A picklable model spec: every worker builds the same seeded tiny model."""
    return functools.partial(tiny_model, arch)


def units(n: int = 12, crash_marker: str | None = None, fail_key=None) -> list[Unit]:
    """``n`` units: a prompt and a layer at which its previous tokens are replaced by noise."""
    return [
        Unit(("unit", i), {"prompt": PROMPTS[i % len(PROMPTS)], "layer": i % 4, "seed": i,
                           "crash_marker": crash_marker, "fail": ("unit", i) == fail_key})
        for i in range(n)
    ]  # fmt: skip


def noise_unit(model, unit: Unit) -> list[dict]:
    """Rows: the top next-token probability after a seeded random manipulation, and the token."""
    import layerscope as ls

    payload = unit.payload
    marker = payload.get("crash_marker")
    if marker and unit.key == ("unit", 3) and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)  # the worker dies mid-unit, once
    if payload.get("fail"):
        raise LayerscopeError(f"unit {unit.key} has bad input")
    out = model.run(
        payload["prompt"],
        interventions=[ls.random("resid_pre", payload["layer"], "previous", seed=payload["seed"])],
        logits="last",
    )
    probs = out.last_logits[0].softmax(-1)
    top = int(torch.argmax(probs))
    return [{"unit": unit.key[1], "layer": payload["layer"], "token": top, "value": float(probs[top])}]


def slow_unit(model, unit: Unit) -> list[dict]:
    """:func:`noise_unit`, taking a second: long enough to kill the driver in the middle of a run."""
    import time

    time.sleep(1.0)
    return noise_unit(model, unit)
