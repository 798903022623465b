"""The adapter finds every architecture's parts; the engine's core invariants hold on each."""

import pytest
import torch
from torch import nn

import layerscope as ls
from layerscope.errors import AdapterError
from layerscope.models.adapter import Adapter
from tests.conftest import tiny
from tests.helpers import assert_clean, hf_hidden_states, hf_logits

PROMPTS = ["the capital of france is paris", "hello world", "what is the capital of spain ?"]


def test_adapter_finds_parts(any_model):
    adapter = any_model.adapter
    assert adapter.n_layers == 4
    assert all(isinstance(b, type(adapter.blocks[0])) for b in adapter.blocks)
    if any_model.is_causal:
        assert adapter.final_norm is not None and adapter.unembed is not None
        assert {"attn_out", "mlp_out"} <= any_model.available_sites
    else:
        assert any_model.available_sites == {"resid_pre", "resid_post"}


def test_adapter_error_names_what_is_missing():
    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"num_hidden_layers": 3})()
            self.proj = nn.Linear(4, 4)

        def get_input_embeddings(self):
            return self.proj

    with pytest.raises(AdapterError, match="could not find the transformer blocks.*3 identical modules"):
        Adapter.inspect(NoBlocks())


def test_no_intervention_is_bit_exact(decoder):
    for prompts in (PROMPTS[0], PROMPTS):  # single prompt and left-padded batch
        out = decoder.run(prompts)
        assert torch.equal(out.logits, hf_logits(decoder, prompts))


def test_single_prompt_equals_plain_hf_call(decoder):
    enc = decoder.tokenizer(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        plain = decoder.hf(**enc).logits
    assert torch.equal(decoder.run(PROMPTS[0]).logits, plain)


def test_capture_matches_hf_hidden_states(any_model):
    hidden = hf_hidden_states(any_model, PROMPTS[0])
    out = any_model.run(PROMPTS[0], capture=["resid_pre", "resid_post"])
    n = any_model.n_layers
    assert torch.equal(out.get("resid_pre", 0), hidden[0])
    for layer in range(n - 1):
        assert torch.equal(out.get("resid_post", layer), hidden[layer + 1])
        assert torch.equal(out.get("resid_pre", layer + 1), hidden[layer + 1])
    last = out.get("resid_post", n - 1)
    if any_model.adapter.final_norm is not None:
        # HF's last hidden state is post-norm; ours is the block output (METHODS.md notation)
        assert torch.equal(any_model.adapter.final_norm(last), hidden[n])
    else:
        assert torch.equal(last, hidden[n])


def test_lens_of_last_layer_is_the_models_prediction(decoder):
    out = decoder.run(PROMPTS, capture=("resid_post", -1))
    assert torch.equal(decoder.adapter.unembed_states(out.get("resid_post", decoder.n_layers - 1)), out.logits)


@pytest.mark.parametrize("site", ["resid_pre", "resid_post", "attn_out", "mlp_out"])
def test_patching_own_states_is_a_noop(decoder, site):
    clean = decoder.run(PROMPTS, capture=site)
    patches = [
        ls.patch(site, l, "all", clean.get(site, l)[r, pad:]).on_rows([r])
        for l in range(decoder.n_layers)
        for r, pad in enumerate(clean.batch.pad)
    ]
    patched = decoder.run(PROMPTS, interventions=patches)
    assert torch.equal(patched.logits, clean.logits)


def test_patching_last_layer_reproduces_source_logits(decoder):
    source, target = "the capital of france is", "hello world ."
    last = decoder.n_layers - 1
    src = decoder.run(source, capture=("resid_post", last))
    out = decoder.run(target, interventions=[ls.patch("resid_post", last, -1, src.state("resid_post", last, -1))])
    assert torch.allclose(out.logits[0, -1], src.logits[0, -1], atol=1e-6)
    assert not torch.allclose(decoder.run(target).logits[0, -1], src.logits[0, -1], atol=1e-3)


def test_batched_variants_equal_one_by_one(decoder):
    d = decoder.d_model
    gen = torch.Generator().manual_seed(1)
    variants = [
        [],
        [ls.patch("resid_post", 1, 1, torch.randn(d, generator=gen))],
        [ls.add("resid_pre", 2, "all", torch.randn(d, generator=gen), scale=3.0)],
        [ls.random("resid_pre", 1, "previous", seed=4)],
        [ls.shuffle("resid_post", 0, "previous", seed=2), ls.zero("mlp_out", 3, -1)],
        [ls.freeze(1)],
        [ls.skip_attention(2)],
        [ls.mean("attn_out", 1, "all")],
    ]
    batched = decoder.run(PROMPTS, variants=variants)
    V = len(variants)
    for p, prompt in enumerate(PROMPTS):
        for v, ivs in enumerate(variants):
            single = decoder.run(prompt, interventions=ivs)
            row = batched.logits[p * V + v, -single.logits.shape[1] :]
            assert (row - single.logits[0]).abs().max() <= 1e-5, (p, v)


@pytest.mark.parametrize("interrupt", [RuntimeError("boom"), KeyboardInterrupt()])
def test_model_is_clean_after_exception(interrupt):
    model = tiny("llama")
    before = model.run(PROMPTS[0]).logits

    def explode(states, context):
        raise interrupt

    with pytest.raises(type(interrupt)):
        model.run(PROMPTS[0], interventions=[ls.apply("resid_post", 2, "all", explode)], capture="resid_pre")
    assert_clean(model)
    assert torch.equal(model.run(PROMPTS[0]).logits, before)


def test_model_is_clean_after_bad_input():
    model = tiny("llama")
    with pytest.raises(ls.LayerscopeError):
        model.run(PROMPTS[0], interventions=[ls.zero("resid_post", 1, 0), ls.zero("resid_post", 99, 0)])
    with pytest.raises(ls.LayerscopeError):
        model.generate(PROMPTS[0], interventions=[ls.patch("resid_post", 1, 0, torch.zeros(7))])
    assert_clean(model)
