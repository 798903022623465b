"""Per-row start layers: variants of one prompt that join the batch at different blocks.

A layer sweep runs, for each k, variants that start from the clean ``resid_pre[k]``. Run as one
batch per k, every k pays for a pass over the weights of blocks k..L-1. Staggered, all of them
run in one forward: the batch grows as it goes up the model, a row joining at block k (its
start state appended to the running batch), so every block's weights are read once per chunk and
no row computes a block below its start.

It works without per-architecture code because every row is the same prompt: the model is called
on one row, so the masks and rotary embeddings it builds (batch 1) broadcast to any number of
rows; a reused KV prefix (batch 1) is widened to the running batch as each block is entered and
narrowed again when the block is done (only one block's widened keys and values are alive at a
time); and the last block hands the model back one row, keeping the full batch for the caller.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import torch

from layerscope.errors import InterventionError


class Stagger:
    """Row bookkeeping of a staggered forward.

    Args:
        starts: per-row start layer, non-decreasing (row r joins at block ``starts[r]``).
        states: ``resid_pre`` states of the rows whose start is above 0: ``[n, T, D]`` one per
            such row in row order, or ``{layer: [1, T, D]}`` when every row that starts at a
            layer starts from the same state (a sweep: no per-row copy is made). Rows starting
            at 0 take the model's embedding output.
        n_layers: blocks in the model.
        cache: the reused KV prefix (batch 1) or None.
    Attributes:
        final: ``[B, T, D]`` output of the last block for every row (set by the forward).
    """

    def __init__(
        self, starts: Sequence[int], states: torch.Tensor | dict[int, torch.Tensor] | None, n_layers: int, cache=None
    ):
        self.starts = list(starts)
        if any(b < a for a, b in zip(self.starts, self.starts[1:], strict=False)):
            raise InterventionError("per-row start layers must be sorted (rows join the batch in layer order)")
        self.lifted = sum(s > 0 for s in self.starts)
        self.zero_rows = len(self.starts) - self.lifted
        if isinstance(states, dict):
            missing = sorted({s for s in self.starts if s > 0} - set(states))
            if missing:
                raise InterventionError(f"start_states has no state for start layer(s) {missing}")
        elif self.lifted and (states is None or states.shape[0] != self.lifted):
            got = "none" if states is None else f"{states.shape[0]} rows"
            raise InterventionError(
                f"start_states must hold one resid_pre row per row that starts above layer 0 ({self.lifted}), got {got}"
            )
        self.states = states
        self.n_layers = n_layers
        self.layers = _cache_layers(cache)
        self._narrow: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.final: torch.Tensor | None = None

    def active(self, layer: int) -> int:
        """Rows in the batch at block ``layer``."""
        return bisect_right(self.starts, layer)

    def enter(self, layer: int, hidden: torch.Tensor) -> torch.Tensor | None:
        """The batch for block ``layer``: the running rows plus the rows that join here.

        ``hidden`` is what the model passes in: the running batch, or (before any row has
        started) the one-row embedding. None = no row has started yet: skip the block.
        """
        before, now = bisect_left(self.starts, layer), self.active(layer)
        if now == 0:
            return None
        parts = [hidden] if before else []
        if now > before:
            if layer == 0:
                parts.append(hidden.expand(now, -1, -1))
            elif isinstance(self.states, dict):
                parts.append(self.states[layer].expand(now - before, -1, -1))
            else:
                parts.append(self.states[before - self.zero_rows : now - self.zero_rows])
        hidden = torch.cat(parts) if len(parts) > 1 else parts[0]
        self._widen(layer, now)
        return hidden

    def leave(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """After block ``layer``: drop its widened cache; the last block hands the model one row."""
        self._restore(layer)
        if layer == self.n_layers - 1:
            self.final = hidden
            return hidden[:1]
        return hidden

    def _widen(self, layer: int, rows: int) -> None:
        if self.layers is None:
            return
        cached = self.layers[layer]
        self._narrow[layer] = (cached.keys, cached.values)
        cached.keys = cached.keys.expand(rows, -1, -1, -1)
        cached.values = cached.values.expand(rows, -1, -1, -1)

    def _restore(self, layer: int) -> None:
        if layer in self._narrow:
            cached = self.layers[layer]
            cached.keys, cached.values = self._narrow.pop(layer)


def _cache_layers(cache):
    if cache is None:
        return None
    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(l, "keys") and hasattr(l, "values") for l in layers):
        raise InterventionError(
            f"per-row start layers with a reused KV prefix need a cache with per-layer keys and values "
            f"(transformers' DynamicCache), got {type(cache).__name__}; run without prefix reuse"
        )
    if any(l.keys is None or l.keys.shape[0] != 1 for l in layers):
        raise InterventionError("per-row start layers need a one-row KV prefix (variants of one prompt)")
    return layers
