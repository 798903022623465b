"""Activation patching: the clean prompt's state at every (layer, position) patched into the corrupt run."""

from layerscope._lazy import lazy_exports

# the API, imported on first use (importing the package, as the CLI does, must not import torch)
_EXPORTS = {
    "CALL_COST_TOKENS": "layerscope.methods.patching.api:CALL_COST_TOKENS",
    "GROUPINGS": "layerscope.methods.patching.api:GROUPINGS",
    "PATCH_SITES": "layerscope.methods.patching.api:PATCH_SITES",
    "Tile": "layerscope.methods.patching.api:Tile",
    "activation_patching": "layerscope.methods.patching.api:activation_patching",
    "attribution_patching": "layerscope.methods.patching.attribution:attribution_patching",
    "compare_with_exact": "layerscope.methods.patching.attribution:compare_with_exact",
    "grid_of": "layerscope.methods.patching.api:grid_of",
    "patch_of": "layerscope.methods.patching.api:patch_of",
    "plan_tiles": "layerscope.methods.patching.api:plan_tiles",
    "single_token": "layerscope.methods.patching.api:single_token",
    "start_layer_of": "layerscope.methods.patching.api:start_layer_of",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
