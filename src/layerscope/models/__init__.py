"""Loading models offline, finding their parts, and checking them at load."""

from layerscope._lazy import lazy_exports

# imported on first use: the engine imports models.checks, and models.model imports the engine
_EXPORTS = {
    "BUILTIN_MODELS": "layerscope.models.registry:BUILTIN_MODELS",
    "DEFAULT_MODEL": "layerscope.models.registry:DEFAULT_MODEL",
    "Capabilities": "layerscope.models.checks:Capabilities",
    "Head": "layerscope.models.head:Head",
    "Model": "layerscope.models.model:Model",
    "ModelInfo": "layerscope.models.model:ModelInfo",
    "load": "layerscope.models.model:load",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "Capabilities", "Head", "Model", "ModelInfo", "load"]
