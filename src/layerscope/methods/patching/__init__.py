"""Activation patching: the clean prompt's state at every (layer, position) patched into the corrupt run."""

from layerscope.methods.patching.api import (
    CALL_COST_TOKENS,
    GROUPINGS,
    PATCH_SITES,
    Tile,
    activation_patching,
    grid_of,
    patch_of,
    plan_tiles,
    single_token,
    start_layer_of,
)

__all__ = [
    "CALL_COST_TOKENS",
    "GROUPINGS",
    "PATCH_SITES",
    "Tile",
    "activation_patching",
    "grid_of",
    "patch_of",
    "plan_tiles",
    "single_token",
    "start_layer_of",
]
