"""The past-token manipulations from layer k on, and the token switch, as engine interventions."""

from __future__ import annotations

import torch

from layerscope.engine import interventions as iv
from layerscope.engine.interventions import Intervention
from layerscope.engine.positions import PositionSpec
from layerscope.errors import LayerscopeError
from layerscope.methods.attend.tasks import canonical_manipulation


def manipulation(
    name: str, layer: int, *, positions: PositionSpec = "previous", seed: int = 0, every_layer: bool = False
) -> list[Intervention]:
    """The interventions of one past-token manipulation from block ``layer`` on (see the module doc).

    Returns a list (one sweep variant) whose interventions act only at layers >= ``layer``.
    """
    name = canonical_manipulation(name)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise LayerscopeError(f"layer must be an int, got {layer!r}")
    layers = f"{layer}:" if every_layer else layer
    if name == "random":
        return [iv.random("resid_pre", layers, positions, seed=seed)]
    if name == "shuffle":
        return [iv.shuffle("resid_pre", layers, positions, seed=seed)]
    if name == "freeze":
        return [iv.freeze(layer, positions)]
    return [iv.skip_attention(layer, positions)]


def switch_variant(
    layer: int, n_layers: int, position: PositionSpec, source_states: torch.Tensor, *, every_layer: bool = True
) -> list[Intervention]:
    """Set the state at ``position`` to the source token's state, at ``resid_pre[layer]`` (and above).

    ``source_states``: ``[L, D]``, the source token's ``resid_pre`` at every layer.
    """
    layers = range(layer, n_layers) if every_layer else [layer]
    return [iv.patch("resid_pre", j, position, source_states[j]) for j in layers]
