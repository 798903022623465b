"""The logit lens: every layer's residual stream read through the model's own unembedding."""

from layerscope.methods.lens.api import (
    logit_lens,
)

__all__ = [
    "logit_lens",
]
