"""Looped-block specs: the block [a, b), the loop counts, and the execution order of (layer, iteration)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from layerscope.engine.interventions import Intervention
from layerscope.errors import LayerscopeError

Block = tuple[int, int]
ORACLE_TASKS = ("arithmetic", "harmful")


# ---- specs -----------------------------------------------------------------------------------


def default_block(n_layers: int) -> Block:
    """The middle third of the model, ``[L // 3, 2 L // 3)`` (at least one block)."""
    a = n_layers // 3
    return a, max(a + 1, (2 * n_layers) // 3)


def parse_block(spec: str | Sequence[int] | None, n_layers: int) -> Block:
    """``"10:20"`` / ``(10, 20)`` / None (the middle third) -> ``(a, b)`` with ``0 <= a < b <= L``.

    Negative bounds count from the end as in Python (``"-10:"`` is the last ten blocks).
    """
    if spec is None:
        return default_block(n_layers)
    if isinstance(spec, str):
        start, sep, stop = spec.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            bounds = (int(start) if start.strip() else 0, int(stop) if stop.strip() else n_layers)
        except ValueError:
            raise LayerscopeError(f"cannot read block {spec!r}: write A:B, e.g. 10:20 (blocks A..B-1)") from None
    else:
        bounds = tuple(int(v) for v in spec)
        if len(bounds) != 2:
            raise LayerscopeError(f"a block is two bounds (A, B), got {spec!r}")
    a, b = (v + n_layers if v < 0 else v for v in bounds)
    if not 0 <= a < b <= n_layers:
        raise LayerscopeError(
            f"block {spec!r} is not a range of blocks: need 0 <= A < B <= {n_layers} (the model has {n_layers} layers)"
        )
    return a, b


def parse_loops(spec: str | int | Sequence[int]) -> list[int]:
    """``"1..4"`` / ``"1-4"`` / ``"1,2,4"`` / ``3`` / ``[1, 2]`` -> sorted distinct loop counts (each >= 1)."""
    if isinstance(spec, bool):
        raise LayerscopeError(f"loop counts must be integers, got {spec!r}")
    if isinstance(spec, int):
        values = [spec]
    elif isinstance(spec, str):
        text = spec.strip()
        match = re.fullmatch(r"(\d+)\s*(?:\.\.|-)\s*(\d+)", text)
        try:
            if match:
                values = list(range(int(match.group(1)), int(match.group(2)) + 1))
            else:
                values = [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            values = []
        if not values:
            raise LayerscopeError(f"cannot read loop counts {spec!r}: write e.g. 1..4, 1-4 or 1,2,4")
    else:
        values = [int(v) for v in spec]
    if not values or min(values) < 1:
        raise LayerscopeError(f"loop counts must be >= 1 (1 = the plain model), got {spec!r}")
    return sorted(set(values))


def execution_order(n_layers: int, block: Block, times: int) -> list[tuple[int, int]]:
    """``(layer, iteration)`` of every block call of the looped model, in execution order."""
    a, b = block
    inner = [(layer, it) for it in range(times) for layer in range(a, b)]
    return [(layer, 0) for layer in range(a)] + inner + [(layer, 0) for layer in range(b, n_layers)]


def at_iteration(intervention: Intervention, iteration: int | None) -> Intervention:
    """The same intervention, applied only at ``iteration`` of a looped block (None = every iteration).

    Layers outside the looped block run once, as iteration 0.
    """
    if iteration is not None and (isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0):
        raise LayerscopeError(f"iteration must be an int >= 0 (0 = the first pass), got {iteration!r}")
    return dataclasses.replace(intervention, loop=iteration)


def _check_site(layer: int, iteration: int, block: Block, times: int, n_layers: int) -> None:
    if (layer, iteration) not in execution_order(n_layers, block, times):
        a, b = block
        raise LayerscopeError(
            f"layer {layer} at iteration {iteration} is never run with block [{a}, {b}) x {times}: layers inside "
            f"the block run iterations 0..{times - 1}, layers outside it only iteration 0"
        )
