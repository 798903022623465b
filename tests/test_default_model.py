"""Integration: the invariants and the CLI's promises on the real default model (SmolLM2-135M)."""

import json

import pytest
import torch

import layerscope as ls
from layerscope.cli.main import main
from tests.helpers import assert_clean, hf_logits

pytestmark = pytest.mark.integration

PROMPTS = [
    "The capital of France is",
    "Q: What is the capital of Spain?\nA: Madrid\nQ: What is the capital of Italy?\nA:",
]


def test_shape_of_the_default_model(default_model):
    info = default_model.info()
    assert (info.n_layers, info.d_model, info.vocab_size) == (30, 576, 49152)
    assert info.architecture == "LlamaForCausalLM"


def test_cli_info_and_lens(capsys):
    assert main(["info", "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert (info["n_layers"], info["d_model"]) == (30, 576)
    assert main(["lens", "The capital of France is", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    last = max(r["position"] for r in rows)
    (final,) = [r for r in rows if r["layer"] == 29 and r["position"] == last]
    assert final["top_token"] == " Paris"


def test_no_intervention_is_bit_exact(default_model):
    assert torch.equal(default_model.run(PROMPTS).logits, hf_logits(default_model, PROMPTS))
    enc = default_model.tokenizer(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(default_model.run(PROMPTS[0]).logits, default_model.hf(**enc).logits)


def test_self_patch_is_a_noop(default_model):
    clean = default_model.run(PROMPTS[0], capture="resid_post")
    patches = [ls.patch("resid_post", l, "all", clean.get("resid_post", l)[0]) for l in range(30)]
    assert torch.equal(default_model.run(PROMPTS[0], interventions=patches).logits, clean.logits)


def test_last_layer_patch_reproduces_the_logits(default_model):
    src = default_model.run(PROMPTS[0], capture=("resid_post", 29))
    out = default_model.run(
        "My favourite fruit is the", interventions=[ls.patch("resid_post", 29, -1, src.state("resid_post", 29, -1))]
    )
    assert torch.allclose(out.last_logits, src.last_logits, atol=1e-4)
    assert default_model.tokenizer.decode(out.last_logits.argmax(-1)) == " Paris"


def test_variants_equal_one_by_one(default_model):
    italy = default_model.run("The country Italy", capture="resid_pre")
    variants = [[ls.patch("resid_pre", k, "Spain", italy.state("resid_pre", k, "Italy"))] for k in (0, 8, 16, 24)] + [
        [ls.random("resid_pre", 10, "previous", seed=3)],
        [ls.freeze(12)],
        [ls.skip_attention(20, -1)],
    ]
    batched = default_model.run(PROMPTS[1], variants=variants)
    batched_last = default_model.run(PROMPTS[1], variants=variants, logits="last")
    for v, ivs in enumerate(variants):
        single = default_model.run(PROMPTS[1], interventions=ivs)
        assert (batched.logits[v] - single.logits[0]).abs().max() <= 1e-5
        # logits="last" unembeds a [B, 1, D] batch: a GEMM instead of a GEMV, so fp32 rounding of
        # the final matmul differs (~1e-6 relative to logits of magnitude ~30)
        assert (batched_last.last_logits[v] - single.last_logits[0]).abs().max() <= 1e-4


def test_substring_positions_on_bpe_tokens(default_model):
    batch = default_model.tokenize(PROMPTS[0])
    assert batch.prompts[0].tokens[batch.positions("France", 0)[0]] == "ĠFrance"
    with pytest.raises(ls.LayerscopeError, match=r"'Germany' is not in the prompt.*'ĠFrance'"):
        default_model.run(PROMPTS[0], interventions=[ls.zero("resid_pre", 3, "Germany")])


def test_clean_after_exception(default_model):
    def fail(states, context):
        raise RuntimeError("inside an intervention")

    with pytest.raises(RuntimeError):
        default_model.run(PROMPTS[0], interventions=[ls.apply("mlp_out", 5, "all", fail)])
    assert_clean(default_model)


def test_greedy_generation_matches_hf(default_model):
    enc = default_model.tokenizer(PROMPTS[1], return_tensors="pt")
    with torch.no_grad():
        ref = default_model.hf.generate(**enc, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=2)
    ours = default_model.generate(PROMPTS[1], max_new_tokens=6, stop_at_eos=False)
    assert ours.tokens[0].tolist() == ref[0, enc.input_ids.shape[1] :].tolist()
