"""layerscope: read, measure and operate on the hidden states of transformer LMs, layer by layer.

>>> import layerscope as ls
>>> model = ls.load()                                   # SmolLM2-135M-Instruct, offline
>>> out = model.run("The capital of France is", capture="resid_post")
>>> out.stack("resid_post").shape                        # [L, B, T, D]
"""

from layerscope.engine import interventions
from layerscope.engine.interventions import (
    Intervention,
    add,
    apply,
    freeze,
    mean,
    patch,
    random,
    shuffle,
    skip_attention,
    zero,
)
from layerscope.engine.positions import Substring
from layerscope.engine.result import RunResult
from layerscope.engine.session import Loop
from layerscope.errors import LayerscopeError
from layerscope.models.model import Model, load
from layerscope.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "Intervention",
    "LayerscopeError",
    "Loop",
    "Model",
    "RunResult",
    "Substring",
    "add",
    "apply",
    "freeze",
    "interventions",
    "load",
    "mean",
    "patch",
    "random",
    "shuffle",
    "skip_attention",
    "zero",
]
__version__ = "0.1.0"
