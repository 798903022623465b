"""layerscope: read, measure and operate on the hidden states of transformer LMs, layer by layer.

>>> import layerscope as ls
>>> model = ls.load()                                   # SmolLM2-135M-Instruct, offline
>>> out = model.run("The capital of France is", capture="resid_post")
>>> out.stack("resid_post").shape                        # [L, B, T, D]
>>> ls.lens.logit_lens(model, "The capital of France is")  # every method: ls.<method> (imported on first use)
"""

from layerscope._lazy import lazy_exports
from layerscope.methods import METHODS

_IV = "layerscope.engine.interventions"
#: every name of ``ls.<name>``, imported on first use: ``import layerscope`` (and so every CLI command,
#: ``--help`` included) must not pay for torch and transformers before it needs them
_EXPORTS = {
    **{name: f"{_IV}:{name}" for name in ("Intervention", "add", "apply", "freeze", "mean", "patch", "random")},
    **{name: f"{_IV}:{name}" for name in ("shuffle", "skip_attention", "zero")},
    "interventions": _IV,
    "Substring": "layerscope.engine.positions:Substring",
    "RunResult": "layerscope.engine.result:RunResult",
    "Loop": "layerscope.engine.session:Loop",
    "LayerscopeError": "layerscope.errors:LayerscopeError",
    "Model": "layerscope.models.model:Model",
    "load": "layerscope.models.model:load",
    "BUILTIN_MODELS": "layerscope.models.registry:BUILTIN_MODELS",
    "DEFAULT_MODEL": "layerscope.models.registry:DEFAULT_MODEL",
    # subpackages reachable as ``ls.<name>`` (the methods pull in sklearn, matplotlib ...)
    **{name: f"layerscope.methods.{name}" for name in METHODS},
    **{name: f"layerscope.{name}" for name in ("methods", "readout", "results", "metrics", "datasets", "engine")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

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
__all__ += sorted(set(_EXPORTS) - set(__all__))
