"""The logit lens: every layer's residual stream read through the model's own unembedding."""

from layerscope._lazy import lazy_exports

# the API, imported on first use (importing the package, as the CLI does, must not import torch)
_EXPORTS = {
    "logit_lens": "layerscope.methods.lens.api:logit_lens",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
