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
from layerscope.methods.patching.attribution import attribution_patching, compare_with_exact

__all__ = [
    "CALL_COST_TOKENS",
    "GROUPINGS",
    "PATCH_SITES",
    "Tile",
    "activation_patching",
    "attribution_patching",
    "compare_with_exact",
    "grid_of",
    "patch_of",
    "plan_tiles",
    "single_token",
    "start_layer_of",
]
