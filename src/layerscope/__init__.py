"""layerscope: read, measure and operate on the hidden states of transformer LMs, layer by layer.

>>> import layerscope as ls
>>> model = ls.load()                                   # SmolLM2-135M-Instruct, offline
>>> out = model.run("The capital of France is", capture="resid_post")
>>> out.stack("resid_post").shape                        # [L, B, T, D]
>>> ls.lens.logit_lens(model, "The capital of France is")  # every method: ls.<method> (imported on first use)
"""

import importlib

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
from layerscope.methods import METHODS
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

#: subpackages reachable as ``ls.<name>``, imported on first use (the methods pull in sklearn, matplotlib ...)
_LAZY = {
    **{name: f"layerscope.methods.{name}" for name in METHODS},
    **{name: f"layerscope.{name}" for name in ("methods", "readout", "results", "metrics", "datasets", "engine")},
}
__all__ += sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'layerscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
