from functools import cache

import pytest

from layerscope.testing import ARCHITECTURES, tiny_model

DECODERS = [a for a in ARCHITECTURES if a != "bert"]


@cache
def tiny(arch: str = "llama"):
    return tiny_model(arch)


@pytest.fixture(params=DECODERS)
def decoder(request):
    return tiny(request.param)


@pytest.fixture(params=ARCHITECTURES)
def any_model(request):
    return tiny(request.param)


@pytest.fixture(scope="session")
def default_model():
    """The real default model (SmolLM2-135M-Instruct), installed by `make setup`."""
    from layerscope.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

    if not BUILTIN_MODELS[DEFAULT_MODEL].is_installed():
        pytest.skip(f"default model not installed: {BUILTIN_MODELS[DEFAULT_MODEL].install}")
    import layerscope

    return layerscope.load(progress=False)
