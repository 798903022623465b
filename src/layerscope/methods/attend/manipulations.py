"""The past-token manipulations from layer k on, and the token switch, as engine interventions."""

from __future__ import annotations

import torch

from layerscope.engine import interventions as iv
from layerscope.engine.interventions import Intervention
from layerscope.engine.positions import PositionSpec
from layerscope.errors import LayerscopeError
from layerscope.methods.attend.tasks import canonical_manipulation

__all__ = ["manipulation", "start_layer", "switch_variant"]


def manipulation(
    name: str,
    layer: int,
    *,
    positions: PositionSpec = "previous",
    seed: int = 0,
    every_layer: bool = False,
    freeze_index: str = "ours",
    skip_positions: PositionSpec | None = None,
    seeding: str | None = None,
) -> list[Intervention]:
    """The interventions of one past-token manipulation from block ``layer`` on (see the module doc).

    Returns a list (one sweep variant) whose interventions act only at layers >= ``layer``, except
    ``freeze_index="authors"``: the authors' freeze at k saves the input of block k - 1, i.e. our
    freeze at ``layer - 1`` (undefined at 0).  ``skip_positions``: the positions whose attention is
    dropped by skip-attention (default ``positions``; the authors drop it at ``"all"``).  ``seeding``:
    how random and shuffle draw, ``"layerscope"`` or ``"authors"`` (their generator calls, see
    ``engine/seeding.py``; None = ``"layerscope"``).
    """
    name = canonical_manipulation(name)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise LayerscopeError(f"layer must be an int, got {layer!r}")
    layers = f"{layer}:" if every_layer else layer
    draws = iv.check_seeding("layerscope" if seeding is None else seeding)
    if name == "random":
        return [iv.random("resid_pre", layers, positions, seed=seed, seeding=draws)]
    if name == "shuffle":
        return [iv.shuffle("resid_pre", layers, positions, seed=seed, seeding=draws)]
    if name == "freeze":
        if freeze_index == "authors":
            if layer < 1:
                raise LayerscopeError("the authors' freeze at k saves the input of block k-1: k must be >= 1")
            return [iv.freeze(layer - 1, positions)]
        return [iv.freeze(layer, positions)]
    return [iv.skip_attention(layer, positions if skip_positions is None else skip_positions)]


def start_layer(name: str, layer: int, freeze_index: str = "ours") -> int:
    """The first block a manipulation reported at ``layer`` changes (the sweep starts there)."""
    return layer - 1 if canonical_manipulation(name) == "freeze" and freeze_index == "authors" else layer


def switch_variant(
    layer: int, n_layers: int, position: PositionSpec, source_states: torch.Tensor, *, every_layer: bool = True
) -> list[Intervention]:
    """Set the state at ``position`` to the source token's state, at ``resid_pre[layer]`` (and above).

    ``source_states``: ``[L, D]``, the source token's ``resid_pre`` at every layer.
    """
    layers = range(layer, n_layers) if every_layer else [layer]
    return [iv.patch("resid_pre", j, position, source_states[j]) for j in layers]
