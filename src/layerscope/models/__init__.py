"""Loading models offline, finding their parts, and checking them at load."""

from layerscope.models.checks import Capabilities
from layerscope.models.head import Head
from layerscope.models.model import Model, ModelInfo, load
from layerscope.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "Capabilities", "Head", "Model", "ModelInfo", "load"]
