from functools import cache

import pytest
import torch

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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run several times faster on one thread (intra-op threading costs more than it saves)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_model_dir(arch: str, folder) -> str:
    """Save tiny model ``arch`` as a local Hugging Face folder (safetensors + tokenizer)."""
    model = tiny(arch)
    model.hf.save_pretrained(folder, safe_serialization=True)
    model.tokenizer.save_pretrained(folder)
    return str(folder)
