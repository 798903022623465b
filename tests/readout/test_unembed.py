"""A lens owns its unembedding: the model's own norm + head, and a fitted lens knows which one."""

import pytest
import torch

from layerscope.datasets import load_corpus
from layerscope.errors import LayerscopeError
from layerscope.readout import TunedLens
from layerscope.readout.unembed import Unembed
from layerscope.testing import tiny_model
from tests.conftest import tiny

TEXTS = load_corpus()[:12]  # enough positions for a 32-dim affine fit


def test_unembed_is_the_models_own_norm_and_head():
    model = tiny("llama")
    h = torch.randn(2, 3, model.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.hf.lm_head(model.hf.model.norm(h))
    torch.testing.assert_close(Unembed(model)(h), ref)
    torch.testing.assert_close(Unembed(model)(h, tokens=[3, 5]), ref[..., [3, 5]])


def test_a_saved_tuned_lens_refuses_another_unembedding(tmp_path):
    model, other = tiny("llama"), tiny_model("llama", seed=1)  # the same shape, other weights
    assert Unembed(model).fingerprint() == Unembed(tiny("llama")).fingerprint() != Unembed(other).fingerprint()
    path = TunedLens.fit(model, TEXTS).save(tmp_path / "lens.safetensors")
    assert TunedLens.load(path, model).metadata["unembedding"] == Unembed(model).fingerprint()
    with pytest.raises(LayerscopeError, match="fitted for another unembedding"):
        TunedLens.load(path, other)
