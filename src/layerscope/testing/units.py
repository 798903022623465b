"""Work units for the distributed tests and benchmarks (importable by Ray workers by name)."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch

from layerscope.distributed import Unit
from layerscope.errors import LayerscopeError
from layerscope.testing import tiny_model

PROMPTS = ["the capital of france is", "hello world", "what is the capital of spain ?", "the cat and the dog"]


def tiny_spec(arch: str = "llama"):
    """A picklable model spec: every worker builds the same seeded tiny model."""
    return functools.partial(tiny_model, arch)


def units(n: int = 12, crash_marker: str | None = None, fail_key=None, kill_marker: str | None = None) -> list[Unit]:
    """``n`` units: a prompt and a layer at which its previous tokens are replaced by noise.

    ``crash_marker``: the worker running unit 3 exits (once); ``kill_marker``: it is ``ray.kill``-ed.
    """
    return [
        Unit(("unit", i), {"prompt": PROMPTS[i % len(PROMPTS)], "layer": i % 4, "seed": i,
                           "crash_marker": crash_marker, "kill_marker": kill_marker, "fail": ("unit", i) == fail_key})
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
    killer = payload.get("kill_marker")
    if killer and unit.key == ("unit", 3) and not Path(killer).exists():
        import ray

        Path(killer).write_text(str(os.getpid()))
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)  # killed mid-unit, as a user would
        time.sleep(60)  # never returns: the kill lands first
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
    time.sleep(1.0)
    return noise_unit(model, unit)
