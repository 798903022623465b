"""Generation under interventions against independent decoding loops.

The references are ``transformers``' own ``generate`` and hand-rolled argmax loops over plain
Hugging Face forwards (with raw hooks, a KV cache, or a rebuilt looped block list), never the
engine's own generation code.
"""

import pytest
import torch

import layerscope as ls
from tests.conftest import tiny
from tests.helpers import assert_clean, freeze_hooks, looped_copy, site_hook, with_hooks

PROMPT = "the capital of france is"
PROMPTS = ["what is the capital of spain ?", "hello world", PROMPT]  # three lengths
N = 8


pytestmark = pytest.mark.usefixtures("one_thread")


def ids_of(model, prompt: str) -> list[int]:
    return model.tokenize(prompt).input_ids[0].tolist()


def vec(d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(d, generator=torch.Generator().manual_seed(seed))


def greedy_loop(model, prompt: str, n: int, forward) -> list[int]:
    """Argmax decoding that recomputes the whole sequence: ``forward(ids [1, T]) -> logits [1, T, V]``."""
    ids = ids_of(model, prompt)
    out = []
    for _ in range(n):
        with torch.no_grad():
            logits = forward(torch.tensor([ids + out]))
        out.append(int(logits[0, -1].argmax()))
    return out


def gen(model, prompts, **kwargs):
    kwargs.setdefault("max_new_tokens", N)
    return model.generate(prompts, stop_at_eos=False, **kwargs)


def plain_greedy(model, prompt: str, n: int = N) -> list[int]:
    return greedy_loop(model, prompt, n, lambda ids: model.hf(input_ids=ids).logits)


# ---- plain decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "prompt"), [("llama", PROMPT), ("gpt2", "one two three four five"), ("gemma3", PROMPT)]
)
def test_greedy_equals_hf_generate(arch, prompt):
    model = tiny(arch)
    enc = model.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        theirs = model.hf.generate(**enc, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
        first = model.hf(**enc).logits[:, -1]
    theirs = theirs[0, enc.input_ids.shape[1] :]
    ours = gen(model, prompt, max_new_tokens=12)
    assert len(theirs) == 12
    assert ours.tokens[0].tolist() == theirs.tolist()
    assert ours.used_cache
    assert torch.allclose(ours.first_logits, first, atol=1e-6)
    assert len(set(theirs.tolist())) > 1  # a degenerate model would hide mistakes


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_batched_prompts_of_different_lengths_equal_one_by_one(arch):
    model = tiny(arch)
    batched = gen(model, PROMPTS)
    assert len(set(batched.batch.pad)) == 3
    for row, prompt in enumerate(PROMPTS):
        single = gen(model, prompt)
        assert batched.tokens[row].tolist() == single.tokens[0].tolist(), prompt
        assert batched.texts[row] == single.texts[0]
        assert single.tokens[0].tolist() == plain_greedy(model, prompt)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_without_cache_equals_cached(arch):
    model = tiny(arch)
    patch = ls.patch("resid_post", 1, 1, vec(model.d_model, 3, 5.0))
    for ivs in ([], [patch]):
        cached = gen(model, PROMPTS, interventions=ivs, max_new_tokens=10)
        fresh = gen(model, PROMPTS, interventions=ivs, max_new_tokens=10, use_cache=False)
        assert cached.used_cache and not fresh.used_cache
        assert torch.equal(cached.tokens, fresh.tokens)


def test_sampling_is_seeded():
    model = tiny("llama")

    def sample(seed):
        return gen(model, PROMPT, do_sample=True, temperature=1.5, seed=seed, max_new_tokens=12)

    a, b = sample(1), sample(1)
    assert torch.equal(a.tokens, b.tokens)
    assert not all(torch.equal(a.tokens, sample(s).tokens) for s in (2, 3, 4))
    # the first draw is a multinomial draw from the tempered distribution with a generator seeded so
    probs = (a.first_logits.float() / 1.5).softmax(-1)
    expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(1))
    assert a.tokens[0, 0] == expected[0, 0]
    # top-k 1 is greedy whatever the seed
    topk = gen(model, PROMPT, do_sample=True, top_k=1, seed=5)
    assert torch.equal(topk.tokens, gen(model, PROMPT).tokens)


# ---- interventions ------------------------------------------------------------------------------


def test_prompt_mode_patches_the_prompt_pass_only():
    """Token 1 from the patched prompt pass; then decoding goes on from its KV cache, unpatched."""
    model = tiny("llama")
    source = model.run("the capital of spain is madrid", capture=("resid_post", 1)).state("resid_post", 1, -1)
    ours = gen(model, PROMPT, interventions=[ls.patch("resid_post", 1, "last", source)], mode="prompt")
    assert ours.used_cache

    ids = torch.tensor([ids_of(model, PROMPT)])
    last = ids.shape[1] - 1

    def patch_last(h):
        h = h.clone()
        h[:, last] = source
        return h

    out = with_hooks(model, [site_hook(model, "resid_post", 1, patch_last)], lambda: model.hf(ids, use_cache=True))
    tokens = [int(out.logits[0, -1].argmax())]
    past = out.cache
    with torch.no_grad():
        for _ in range(N - 1):
            out = model.hf(input_ids=torch.tensor([[tokens[-1]]]), cache=past, use_cache=True)
            past = out.cache
            tokens.append(int(out.logits[0, -1].argmax()))
    assert ours.tokens[0].tolist() == tokens
    assert tokens != plain_greedy(model, PROMPT)
    # patching at every step (the newest token each time) is a different computation
    every = gen(model, PROMPT, interventions=[ls.patch("resid_post", 1, "last", source)], mode="every_step")
    assert not every.used_cache
    assert every.tokens[0].tolist() != tokens


@pytest.mark.parametrize(("arch", "prompt"), [("llama", PROMPT), ("gpt2", "one two three four five")])
def test_every_step_freeze_recomputes_and_equals_a_hand_loop(arch, prompt):
    model = tiny(arch)
    k = 1
    ours = gen(model, prompt, interventions=[ls.freeze(k)], mode="every_step")
    assert not ours.used_cache

    def frozen_forward(ids):
        hooks = freeze_hooks(model, k, list(range(ids.shape[1] - 1)))
        return with_hooks(model, hooks, lambda: model.hf(input_ids=ids).logits)

    assert ours.tokens[0].tolist() == greedy_loop(model, prompt, N, frozen_forward)
    with torch.no_grad():
        plain_first = model.hf(**model.tokenize(prompt).model_inputs()).logits[:, -1]
    assert (ours.first_logits - plain_first).abs().max() > 1e-4  # the freeze matters
    if arch == "llama":  # (tiny GPT-2 mostly repeats its input token whatever happens)
        assert ours.tokens[0].tolist() != plain_greedy(model, prompt)
    with pytest.raises(ls.LayerscopeError, match="KV cache would be wrong"):
        gen(model, prompt, interventions=[ls.freeze(k)], mode="every_step", use_cache=True)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_looped_generation_equals_a_repeated_block_list(arch):
    model = tiny(arch)
    ours = gen(model, PROMPT, loop=(1, 3, 2))
    assert not ours.used_cache
    looped, _ = looped_copy(model, 1, 3, 2)
    expected = greedy_loop(model, PROMPT, N, lambda ids: looped(input_ids=ids, use_cache=False).logits)
    assert ours.tokens[0].tolist() == expected
    assert expected != plain_greedy(model, PROMPT)


@pytest.mark.parametrize("mode", ["prompt", "every_step"])
def test_variants_equal_one_by_one_generations(mode):
    model = tiny("llama")
    d = model.d_model
    variants = [
        [],
        [ls.add("resid_post", 1, "all", vec(d, 1, 4.0))],
        [ls.patch("resid_pre", 2, 0, vec(d, 2, 4.0))],
        [ls.freeze(2)],
        [ls.skip_attention(1)],
    ]
    batched = gen(model, PROMPTS[:2], variants=variants, mode=mode)
    V = len(variants)
    for p, prompt in enumerate(PROMPTS[:2]):
        rows = [gen(model, prompt, interventions=ivs, mode=mode).tokens[0].tolist() for ivs in variants]
        for v in range(V):
            assert batched.tokens[p * V + v].tolist() == rows[v], (p, v)
        assert len({tuple(r) for r in rows}) > 2  # the variants really differ


def test_every_step_add_with_cache_equals_recomputing():
    model = tiny("llama")
    iv = ls.add("resid_post", 1, "all", vec(model.d_model, 1, 4.0))
    cached = gen(model, PROMPTS, interventions=[iv], mode="every_step")
    assert cached.used_cache  # 'all' does not move: the cache stays exact
    fresh = gen(model, PROMPTS, interventions=[iv], mode="every_step", use_cache=False)
    assert torch.equal(cached.tokens, fresh.tokens)
    hooks = [site_hook(model, "resid_post", 1, lambda h: h + iv.op.vector)]
    for row, prompt in enumerate(PROMPTS):
        steered = greedy_loop(model, prompt, N, lambda ids: with_hooks(model, hooks, lambda: model.hf(ids).logits))
        assert cached.tokens[row].tolist() == steered


def test_a_row_that_ends_is_padded_while_others_go_on():
    """Steering one variant straight to end-of-sequence stops it; the other rows are unaffected."""
    model = tiny("llama")
    eos = model.tokenizer.eos_token_id
    to_eos = ls.add("resid_post", model.n_layers - 1, "all", 50.0 * model.adapter.unembed.weight[eos].detach())
    out = model.generate(PROMPT, variants=[[], [to_eos]], mode="every_step", max_new_tokens=N)
    assert out.tokens[1, 0] == eos
    assert (out.tokens[1, 1:] == model.tokenizer.pad_token_id).all()
    assert out.texts[1] == ""
    assert out.tokens[0].tolist() == plain_greedy(model, PROMPT, out.tokens.shape[1])
    alone = model.generate(PROMPT, interventions=[to_eos], mode="every_step", max_new_tokens=N)
    assert alone.tokens.tolist() == [[eos]]  # every row ended: generation stops early
    assert_clean(model)


# ---- errors and cleanliness ---------------------------------------------------------------------


def test_generation_errors():
    with pytest.raises(ls.LayerscopeError, match="needs a causal LM"):
        tiny("bert").generate(PROMPT)
    model = tiny("llama")
    with pytest.raises(ls.LayerscopeError, match="unknown generation mode 'sometimes'"):
        model.generate(PROMPT, mode="sometimes")
    for n in (0, -1):
        with pytest.raises(ls.LayerscopeError, match="max_new_tokens must be an integer >= 1"):
            model.generate(PROMPT, max_new_tokens=n)
    assert_clean(model)


def test_model_is_clean_after_generation_and_after_an_exception_inside_it():
    model = tiny("llama")
    before = plain_greedy(model, PROMPT)
    gen(model, PROMPTS, interventions=[ls.freeze(1), ls.add("mlp_out", 2, 0, vec(model.d_model, 1))], mode="every_step")
    gen(model, PROMPT, loop=(0, 2, 3))
    assert_clean(model)
    calls = []

    def explode(states, context):
        calls.append(1)
        if len(calls) == 3:  # the third step, with the generation under way
            raise RuntimeError("boom")
        return states

    with pytest.raises(RuntimeError, match="boom"):
        gen(model, PROMPT, interventions=[ls.apply("resid_post", 1, "last", explode)], mode="every_step")
    assert len(calls) == 3
    assert_clean(model)
    assert gen(model, PROMPT).tokens[0].tolist() == before
