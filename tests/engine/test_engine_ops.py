"""Every engine op, position spec, start layer, prefix reuse and loop against an independent computation.

The references are plain Hugging Face forwards with raw torch hooks (``tests/helpers.py``) or a
rebuilt block list, never the engine itself, so a test fails when the engine's hooks, index
bookkeeping, block wrappers or caches are wrong.
"""

import dataclasses
import re

import pytest
import torch

import layerscope as ls
from layerscope.engine.interventions import SITES
from layerscope.errors import InterventionError, LayerscopeError, SiteError
from tests.conftest import tiny
from tests.helpers import (
    assert_clean,
    freeze_hooks,
    hf_logits,
    looped_copy,
    random_like,
    shuffled,
    site_hook,
    with_hooks,
)

PROMPT = "the capital of france is paris"  # 6 tokens
OTHER = "what is the capital of spain ?"  # 7 tokens
BATCH = [PROMPT, "hello world", OTHER]  # left-padded
SHAPES = ["llama", "gpt2"]  # the two block layouts (pre-norm + rotary, GPT-2 style)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- helpers ---------------------------------------------------------------------------------


def vec(d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(d, generator=torch.Generator().manual_seed(seed))


def hand(model, prompts, hooks) -> torch.Tensor:
    """Logits of the plain HF forward with raw hooks installed."""
    return with_hooks(model, hooks, lambda: hf_logits(model, prompts))


def at(positions, fn):
    """``h -> h`` with ``h[:, positions]`` replaced by ``fn(h[:, positions])`` (positions in the padded axis)."""

    def edit(h):
        h = h.clone()
        h[:, positions] = fn(h[:, positions])
        return h

    return edit


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def changes(model, prompts, logits, tol=1e-4) -> bool:
    """Whether ``logits`` differ from the clean run (so a comparison can fail)."""
    return diff(logits, hf_logits(model, prompts)) > tol


# ---- ops vs hand-written hooks ---------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_add_equals_hand_hook(decoder, site):
    v = vec(decoder.d_model, 1, 3.0)
    out = decoder.run(PROMPT, interventions=[ls.add(site, 2, [1, 3], v, scale=2.5)]).logits
    ref = hand(decoder, PROMPT, [site_hook(decoder, site, 2, at([1, 3], lambda s: s + 2.5 * v))])
    assert diff(out, ref) <= 1e-6
    assert changes(decoder, PROMPT, out)


@pytest.mark.parametrize("arch", SHAPES)
def test_zero_equals_hand_hook(arch):
    model = tiny(arch)
    ivs = [ls.zero("mlp_out", 1), ls.zero("resid_post", 2, "last")]
    out = model.run(PROMPT, interventions=ivs).logits
    ref = hand(
        model,
        PROMPT,
        [
            site_hook(model, "mlp_out", 1, torch.zeros_like),
            site_hook(model, "resid_post", 2, at([5], torch.zeros_like)),
        ],
    )
    assert diff(out, ref) <= 1e-6
    assert changes(model, PROMPT, out)


@pytest.mark.parametrize("site", SITES)
def test_patch_from_another_prompt_equals_hand_copy(decoder, site):
    layer = 1
    grabbed = {}

    def grab(h):
        grabbed["h"] = h.clone()
        return h

    hand(decoder, OTHER, [site_hook(decoder, site, layer, grab)])
    source = decoder.run(OTHER, capture=(site, layer)).state(site, layer, [3, 5])  # 'capital', 'spain'
    assert torch.equal(source, grabbed["h"][0, [3, 5]])
    out = decoder.run(PROMPT, interventions=[ls.patch(site, layer, [1, 3], source)]).logits
    ref = hand(decoder, PROMPT, [site_hook(decoder, site, layer, at([1, 3], lambda s: grabbed["h"][:, [3, 5]]))])
    assert diff(out, ref) <= 1e-6
    assert changes(decoder, PROMPT, out)


@pytest.mark.parametrize("arch", SHAPES)
def test_mean_with_value_equals_hand_hook(arch):
    model = tiny(arch)
    m = vec(model.d_model, 2)
    out = model.run(PROMPT, interventions=[ls.mean("attn_out", 1, "previous", value=m)]).logits
    ref = hand(model, PROMPT, [site_hook(model, "attn_out", 1, at(list(range(5)), lambda s: m.expand_as(s)))])
    assert diff(out, ref) <= 1e-6
    assert changes(model, PROMPT, out)


@pytest.mark.parametrize("arch", SHAPES)
def test_mean_over_own_tokens_respects_padding(arch):
    model = tiny(arch)
    batch = model.tokenize(BATCH)

    def row_means(h):
        h = h.clone()
        for r, pad in enumerate(batch.pad):
            h[r, pad:] = h[r, pad:].mean(0)
        return h

    out = model.run(BATCH, interventions=[ls.mean("resid_post", 1)]).logits
    ref = hand(model, BATCH, [site_hook(model, "resid_post", 1, row_means)])
    assert diff(out, ref) <= 1e-6


@pytest.mark.parametrize("arch", SHAPES)
def test_random_is_seeded_norm_preserving_and_equals_hand_draw(arch):
    model = tiny(arch)
    k = 2
    clean = model.run(PROMPT, capture=("resid_pre", k)).get("resid_pre", k)[0]

    def go(seed):
        return model.run(PROMPT, interventions=[ls.random("resid_pre", k, seed=seed)], capture=("resid_pre", k))

    a, b, c = go(3), go(3), go(4)
    assert torch.equal(a.logits, b.logits)
    new = a.get("resid_pre", k)[0]
    assert torch.allclose(new.norm(dim=-1), clean.norm(dim=-1), rtol=1e-5, atol=0)
    assert torch.equal(new[-1], clean[-1])  # "previous" leaves the last token alone
    assert not torch.allclose(new[:-1], clean[:-1], atol=1e-3)
    assert not torch.allclose(new[:-1], c.get("resid_pre", k)[0, :-1], atol=1e-3)
    ref = hand(model, PROMPT, [site_hook(model, "resid_pre", k, at(list(range(5)), lambda s: random_like(s[0], 3)))])
    assert diff(a.logits, ref) <= 1e-6


def test_random_noise_per_row_is_independent_of_the_batch():
    model = tiny("llama")
    batch = model.tokenize(BATCH)

    def per_row(h):
        h = h.clone()
        for r, pad in enumerate(batch.pad):
            h[r, pad:-1] = random_like(h[r, pad:-1], 5)
        return h

    out = model.run(BATCH, interventions=[ls.random("resid_pre", 1, "previous", seed=5)]).logits
    assert diff(out, hand(model, BATCH, [site_hook(model, "resid_pre", 1, per_row)])) <= 1e-6


@pytest.mark.parametrize("arch", SHAPES)
def test_shuffle_permutes_each_state_and_equals_hand_draw(arch):
    model = tiny(arch)
    k = 1
    clean = model.run(PROMPT, capture=("resid_post", k)).get("resid_post", k)[0]
    out = model.run(PROMPT, interventions=[ls.shuffle("resid_post", k, seed=7)], capture=("resid_post", k))
    new = out.get("resid_post", k)[0]
    assert torch.equal(new.sort(dim=-1).values, clean.sort(dim=-1).values)
    assert not torch.equal(new[:-1], clean[:-1])
    assert torch.equal(new[-1], clean[-1])
    ref = hand(model, PROMPT, [site_hook(model, "resid_post", k, at(list(range(5)), lambda s: shuffled(s[0], 7)))])
    assert diff(out.logits, ref) <= 1e-6
    other = model.run(PROMPT, interventions=[ls.shuffle("resid_post", k, seed=8)]).logits
    assert diff(other, out.logits) > 1e-5


@pytest.mark.parametrize("k", [0, 1, 2])
def test_freeze_previous_equals_hand_freeze(decoder, k):
    out = decoder.run(PROMPT, interventions=[ls.freeze(k, "previous")]).logits
    ref = hand(decoder, PROMPT, freeze_hooks(decoder, k, list(range(5))))
    assert diff(out, ref) <= 1e-6
    assert changes(decoder, PROMPT, out)


def test_shared_freeze_object_in_several_variants_keeps_rows_apart():
    """One freeze object reused by two variants must record and replay each variant's own states."""
    model = tiny("llama")
    frozen = ls.freeze(2)
    pushes = [vec(model.d_model, s, 3.0) for s in (10, 11)]
    out = model.run(PROMPT, variants=[[frozen, ls.add("resid_pre", 0, "all", p)] for p in pushes]).logits
    for v, push in enumerate(pushes):
        hooks = [site_hook(model, "resid_pre", 0, lambda h, p=push: h + p)]
        ref = hand(model, PROMPT, hooks + freeze_hooks(model, 2, list(range(5))))
        assert diff(out[v : v + 1], ref) <= 1e-5, v


@pytest.mark.parametrize("k", [0, 2])
def test_skip_attention_equals_zeroed_attention_output(decoder, k):
    out = decoder.run(PROMPT, interventions=[ls.skip_attention(k)]).logits
    hooks = [site_hook(decoder, "attn_out", j, torch.zeros_like) for j in range(k, decoder.n_layers)]
    assert diff(out, hand(decoder, PROMPT, hooks)) <= 1e-6
    assert changes(decoder, PROMPT, out)


@pytest.mark.parametrize("arch", SHAPES)
def test_apply_user_function_equals_hand_hook_and_sees_its_context(arch):
    model = tiny(arch)
    seen = []

    def fn(states, context):
        seen.append((context.layer, context.iteration, context.rows.tolist(), context.positions.tolist()))
        assert context.hidden.shape == (1, 6, model.d_model)
        return states * 1.5 + context.layer

    out = model.run(PROMPT, interventions=[ls.apply("resid_post", "1:3", [0, 2], fn)]).logits
    hooks = [site_hook(model, "resid_post", j, at([0, 2], lambda s, j=j: s * 1.5 + j)) for j in (1, 2)]
    assert diff(out, hand(model, PROMPT, hooks)) <= 1e-6
    assert seen == [(1, 0, [0, 0], [0, 2]), (2, 0, [0, 0], [0, 2])]


def test_apply_function_returning_a_wrong_shape_raises():
    model = tiny("llama")
    with pytest.raises(SiteError, match=r"must return a tensor of shape \(2, 32\), got \(32,\)"):
        model.run(PROMPT, interventions=[ls.apply("resid_post", 1, [0, 1], lambda s, c: s[0])])
    assert_clean(model)


# ---- positions -------------------------------------------------------------------------------

WORDS = "the cat and the dog and the cat is big"  # one token per word
UNK = "we all know that all is well"  # 'all' is not in the tiny vocabulary: [UNK] tokens with offsets


def _last_run(words: list[str], run: list[str]) -> int:
    """Index of the last token of the last occurrence of ``run`` in ``words`` (computed on words)."""
    starts = [i for i in range(len(words) - len(run) + 1) if words[i : i + len(run)] == run]
    return starts[-1] + len(run) - 1


W = WORDS.split()
POSITION_CASES = [
    (WORDS, -1, [9]),
    (WORDS, -3, [7]),
    (WORDS, slice(2, 5), [2, 3, 4]),
    (WORDS, slice(-3, None), [7, 8, 9]),
    (WORDS, [0, -1, 4], [0, 9, 4]),
    (WORDS, range(1, 3), [1, 2]),
    (WORDS, "all", list(range(10))),
    (WORDS, "last", [9]),
    (WORDS, "previous", list(range(9))),
    (WORDS, "the cat", [_last_run(W, ["the", "cat"])]),
    (WORDS, "dog and", [_last_run(W, ["dog", "and"])]),
    (WORDS, "ca", [_last_run(W, ["cat"])]),  # inside a word: the token holding its last character
    (WORDS, ls.Substring("cat"), [_last_run(W, ["cat"])]),
    (UNK, ls.Substring("all"), [_last_run(UNK.split(), ["all"])]),
    (UNK, "all", list(range(7))),
    (WORDS, [0, "the cat", -1], [0, _last_run(W, ["the", "cat"]), 9]),  # ints and substrings mixed
]


@pytest.mark.parametrize(("prompt", "spec", "expected"), POSITION_CASES)
def test_position_specs_resolve_and_apply_in_a_padded_row(prompt, spec, expected):
    model = tiny("llama")
    batch = model.tokenize(prompt)
    assert batch.positions(spec, 0) == expected
    # end to end, in a row that is left-padded: positions are relative to the prompt
    prompts = [OTHER + " " + OTHER, prompt]
    padded = model.tokenize(prompts)
    pad = padded.pad[1]
    assert pad > 0
    out = model.run(prompts, interventions=[ls.zero("resid_post", 1, spec).on_rows([1])]).logits

    def zero_row1(h):
        h = h.clone()
        h[1, [pad + p for p in expected]] = 0
        return h

    assert diff(out, hand(model, prompts, [site_hook(model, "resid_post", 1, zero_row1)])) <= 1e-6


def test_position_beyond_prompt_lists_tokens_and_range():
    model = tiny("llama")
    for p in (2, 5, -3):
        with pytest.raises(
            SiteError, match=rf"position {p} is beyond the prompt: it has 2 tokens.*'hello', 'world'.*-2\.\.1"
        ):
            model.run("hello world", interventions=[ls.zero("resid_post", 0, p)])
    assert_clean(model)


def test_absent_substring_shows_tokens():
    model = tiny("llama")
    with pytest.raises(SiteError, match=r"substring 'paris' is not in the prompt.*tokens are \['hello', 'world'\]"):
        model.run("hello world", interventions=[ls.zero("resid_post", 0, "paris")])
    with pytest.raises(SiteError, match="substring 'all' is not in the prompt"):
        model.run("hello world", interventions=[ls.zero("resid_post", 0, ls.Substring("all"))])


@pytest.mark.parametrize("prompts", ["", "   ", [PROMPT, ""], []])
def test_empty_prompt_raises(prompts):
    with pytest.raises(LayerscopeError, match="empty prompt|no prompts"):
        tiny("llama").run(prompts)


def test_unknown_site_raises():
    with pytest.raises(SiteError, match=r"unknown site 'resid_mid'.*resid_pre, resid_post, attn_out, mlp_out"):
        ls.zero("resid_mid", 0)
    with pytest.raises(SiteError, match="unknown site 'resid_mid'"):
        tiny("llama").run(PROMPT, capture="resid_mid")


def test_sub_block_sites_are_refused_on_an_encoder():
    model = tiny("bert")
    with pytest.raises(SiteError, match="site 'attn_out' is not available"):
        model.run(PROMPT, interventions=[ls.zero("attn_out", 0)])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("all", [0, 1, 2, 3]), ("1:3", [1, 2]), ("::2", [0, 2]), ("1::2", [1, 3]), (":-1", [0, 1, 2]), ("0,-1", [0, 3])],
)
def test_layer_specs_resolve_like_python_slices(spec, expected):
    from layerscope.engine.interventions import resolve_layers

    assert resolve_layers(spec, 4) == expected
    if ":" in spec:
        assert expected == list(range(4))[_as_python(spec)]


def _as_python(spec: str):
    if spec == "all":
        return slice(None)
    if ":" in spec:
        return slice(*[int(p) if p else None for p in spec.split(":")])
    return slice(None)  # lists are checked against their expected value only


@pytest.mark.parametrize(("spec", "message"), [("0:4:0", "step"), ("3:1", "select no layer"), ("1:2:3:4", "read")])
def test_bad_layer_specs_say_why(spec, message):
    from layerscope.engine.interventions import resolve_layers

    with pytest.raises(SiteError, match=message):
        resolve_layers(spec, 4)


@pytest.mark.parametrize("layer", [4, -5, 99])
def test_unknown_layer_gives_valid_range(layer):
    model = tiny("llama")
    with pytest.raises(
        SiteError, match=rf"layer {layer} does not exist: the model has 4 layers; valid layers are 0\.\.3"
    ):
        model.run(PROMPT, interventions=[ls.zero("resid_post", layer)])
    with pytest.raises(SiteError, match=rf"layer {layer} does not exist"):
        model.run(PROMPT, capture=("resid_post", layer))
    assert_clean(model)


def test_hidden_size_mismatch_asks_for_a_mapping_and_a_mapping_fixes_it():
    model = tiny("llama")
    source = torch.randn(2, 16, generator=torch.Generator().manual_seed(3))
    for iv in (ls.patch("resid_post", 1, [1, 2], source), ls.add("resid_post", 1, "all", source[0])):
        with pytest.raises(InterventionError, match=r"hidden-size mismatch.*16 dims.*d_model=32.*mapping="):
            model.run(PROMPT, interventions=[iv])
    torch.manual_seed(0)
    mapping = torch.nn.Linear(16, model.d_model)
    out = model.run(PROMPT, interventions=[ls.patch("resid_post", 1, [1, 2], source, mapping=mapping)]).logits
    with torch.no_grad():
        mapped = mapping(source)
    direct = model.run(PROMPT, interventions=[ls.patch("resid_post", 1, [1, 2], mapped)]).logits
    assert torch.equal(out, direct)
    ref = hand(model, PROMPT, [site_hook(model, "resid_post", 1, at([1, 2], lambda s: mapped))])
    assert diff(out, ref) <= 1e-6


def test_wrong_patch_value_shape_raises():
    model = tiny("llama")
    d = model.d_model
    with pytest.raises(InterventionError, match=r"shape \(3, 32\) does not fit 2 selected states.*\[2, D\]"):
        model.run(PROMPT, interventions=[ls.patch("resid_post", 1, [1, 2], torch.zeros(3, d))])
    with pytest.raises(InterventionError, match=r"shape \(2, 2, 32\) does not fit"):
        model.run(PROMPT, interventions=[ls.patch("resid_post", 1, [1, 2], torch.zeros(2, 2, d))])
    with pytest.raises(InterventionError, match=r"AddOp needs a \[D\] vector"):
        model.run(PROMPT, interventions=[ls.add("resid_post", 1, [1, 2], torch.zeros(2, d))])
    assert_clean(model)


# ---- start at layer l --------------------------------------------------------------------------


def test_start_layer_equals_full_run(decoder):
    for prompts in (PROMPT, BATCH):
        clean = decoder.run(prompts, capture="resid_pre")
        for layer in [*range(decoder.n_layers), -1]:
            states = clean.get("resid_pre", layer % decoder.n_layers)
            out = decoder.run(prompts, start_layer=layer, start_states=states)
            assert diff(out.logits, clean.logits) <= 1e-6, layer


@pytest.mark.parametrize("layer", [0, 1, 3])
def test_start_states_replace_the_input_of_block_l(layer):
    model = tiny("llama")
    states = torch.randn(1, 6, model.d_model, generator=torch.Generator().manual_seed(layer))
    out = model.run(PROMPT, start_layer=layer, start_states=states).logits
    ref = hand(model, PROMPT, [site_hook(model, "resid_pre", layer, lambda h: states)])
    assert diff(out, ref) <= 1e-6
    assert changes(model, PROMPT, out)


def test_start_layer_with_variants_broadcasts_states():
    model = tiny("llama")
    layer = 2
    clean = model.run(PROMPT, capture=("resid_pre", layer))
    variants = [
        [],
        [ls.add("resid_post", 2, "all", vec(model.d_model, 4, 3.0))],
        [ls.zero("mlp_out", 3, -1)],
        [ls.patch("resid_pre", 2, 1, vec(model.d_model, 5))],
    ]
    states = clean.get("resid_pre", layer)
    assert states.shape[0] == 1
    out = model.run(PROMPT, variants=variants, start_layer=layer, start_states=states)
    for v, ivs in enumerate(variants):
        assert diff(out.logits[v : v + 1], model.run(PROMPT, interventions=ivs).logits) <= 1e-5, v


def test_lower_layers_are_skipped():
    model = tiny("llama")
    layer = 2
    calls = {"op_below": 0, "op_at": 0, "mlp_below": 0, "mlp_at": 0}

    def counter(name):
        def fn(states, context):
            calls[name] += 1
            return states

        return fn

    def hook_counter(name):
        def hook(module, args, output):
            calls[name] += 1

        return hook

    clean = model.run(PROMPT, capture=("resid_pre", layer))
    below = [ls.apply("resid_post", layer - 1, "all", counter("op_below"))]
    with pytest.raises(InterventionError, match="lie below start_layer"):  # it would never run: refused
        model.run(PROMPT, interventions=below, start_layer=layer, start_states=clean.get("resid_pre", layer))
    ivs = [ls.apply("resid_pre", layer, "all", counter("op_at"))]
    hooks = [
        (model.adapter.mlp[layer - 1], "post", hook_counter("mlp_below")),
        (model.adapter.mlp[layer], "post", hook_counter("mlp_at")),
    ]
    out = with_hooks(
        model,
        hooks,
        lambda: model.run(PROMPT, interventions=ivs, start_layer=layer, start_states=clean.get("resid_pre", layer)),
    )
    assert calls == {"op_below": 0, "op_at": 1, "mlp_below": 0, "mlp_at": 1}
    assert diff(out.logits, clean.logits) <= 1e-6
    assert_clean(model)


def test_start_layer_errors():
    model = tiny("llama")
    clean = model.run(PROMPT, capture="resid_pre")
    with pytest.raises(InterventionError, match=r"start_layer=2 needs start_states"):
        model.run(PROMPT, start_layer=2)
    with pytest.raises(InterventionError, match=r"start_states has shape \(1, 5, 32\), expected \(1, 6, 32\)"):
        model.run(PROMPT, start_layer=2, start_states=clean.get("resid_pre", 2)[:, :5])
    with pytest.raises(SiteError, match="below start_layer=2 are not computed"):
        model.run(PROMPT, start_layer=2, start_states=clean.get("resid_pre", 2), capture=("resid_post", 1))


# ---- prefix reuse ------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "prefix_prompt"), [("llama", PROMPT), ("gpt2", PROMPT), ("gemma3", "the capital of")])
def test_prefix_reuse_equals_full_run(arch, prefix_prompt):
    model = tiny(arch)
    d, p = model.d_model, 3
    clean = model.run(prefix_prompt, keep_cache=True)
    variants = [
        [],
        [ls.patch("resid_post", 1, 4, vec(d, 6))],
        [ls.add("resid_pre", 2, [3, 5], vec(d, 7, 2.0))],
        [ls.zero("attn_out", 0, "last")],
        [ls.random("mlp_out", 1, slice(3, None), seed=1)],
    ]
    full = model.run(PROMPT, variants=variants, capture="resid_post")
    for _ in range(2):  # twice: the prefix's own cache must not be consumed or altered
        reused = model.run(PROMPT, variants=variants, prefix=clean, prefix_length=p, capture="resid_post")
        assert reused.logits.shape[1] == 6 - p
        assert diff(reused.logits[:, -1], full.logits[:, -1]) <= 1e-5
        assert diff(reused.logits, full.logits[:, p:]) <= 1e-5
        assert diff(reused.get("resid_post", 2), full.get("resid_post", 2)[:, p:]) <= 1e-5
    assert diff(full.logits[1], full.logits[0]) > 1e-4  # the patches matter


def test_prefix_reuse_from_the_first_tokens_only(decoder):
    p = 3
    first = decoder.run("the capital of", keep_cache=True)
    reused = decoder.run(PROMPT, prefix=first, prefix_length=p)
    assert diff(reused.logits, decoder.run(PROMPT).logits[:, p:]) <= 1e-5


def test_sliding_window_cache_that_cannot_be_cut_back_says_what_to_do():
    model = tiny("gemma3")  # sliding window 4: a 6-token run keeps only the last 3 positions there
    clean = model.run(PROMPT, keep_cache=True)
    with pytest.raises(InterventionError, match="run the prefix on its first 3 tokens only"):
        model.run(PROMPT, prefix=clean, prefix_length=3)
    assert_clean(model)


def test_patch_inside_the_prefix_raises():
    model = tiny("llama")
    clean = model.run(PROMPT, keep_cache=True)
    d = model.d_model
    with pytest.raises(InterventionError, match=r"positions \[1\] falls in the reused KV prefix \(first 3 positions\)"):
        model.run(PROMPT, variants=[[ls.patch("resid_post", 1, 1, vec(d, 0))]], prefix=clean, prefix_length=3)
    with pytest.raises(InterventionError, match=r"positions \[0, 1, 2\] falls in the reused KV prefix"):
        model.run(PROMPT, interventions=[ls.random("resid_pre", 1)], prefix=clean, prefix_length=3)
    with pytest.raises(InterventionError, match="keep_cache=True"):
        model.run(PROMPT, prefix=model.run(PROMPT), prefix_length=3)
    with pytest.raises(InterventionError, match="tokens differ"):
        model.run("the capital of spain is madrid", prefix=clean, prefix_length=4)
    assert_clean(model)


# ---- loops -------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", SHAPES)
def test_loop_once_is_the_plain_model(arch):
    model = tiny(arch)
    for prompts in (PROMPT, BATCH):
        assert torch.equal(model.run(prompts, loop=(1, 3, 1)).logits, hf_logits(model, prompts))


def _looped_reference(model, prompts, start, stop, times, hooks=()):
    hf, order = looped_copy(model, start, stop, times)
    inputs = model.tokenize(prompts).model_inputs()
    out = with_hooks(
        model, hooks(hf) if callable(hooks) else hooks, lambda: hf(**inputs, use_cache=False, output_hidden_states=True)
    )
    return out, order


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("times", [2, 3])
def test_loop_equals_a_repeated_block_list(arch, times):
    model = tiny(arch)
    a, b = 1, 3
    for prompts in (PROMPT, BATCH):
        out = model.run(prompts, loop=(a, b, times), capture=["resid_pre", "resid_post"])
        ref, order = _looped_reference(model, prompts, a, b, times)
        assert diff(out.logits, ref.logits) <= 1e-5
        assert diff(out.logits, hf_logits(model, prompts)) > 1e-4
        # expanded block j is (layer order[j], iteration = earlier occurrences of that layer)
        executed = [(layer, order[:j].count(layer)) for j, layer in enumerate(order)]
        assert out.iterations("resid_post") == executed
        assert out.iterations("resid_pre") == executed
        for j, (layer, it) in enumerate(executed):
            assert diff(out.get("resid_pre", layer, it), ref.hidden_states[j]) <= 1e-5
            if j < len(order) - 1:  # HF's last hidden state is after the final norm
                assert diff(out.get("resid_post", layer, it), ref.hidden_states[j + 1]) <= 1e-5
        assert {it for layer, it in executed if a <= layer < b} == set(range(times))
        with pytest.raises(SiteError, match="iteration 1"):
            out.get("resid_post", 0, 1)


@pytest.mark.parametrize(("site", "layer", "loop"), [("resid_post", 2, 1), ("resid_pre", 1, 2), ("mlp_out", 1, 0)])
def test_intervention_at_one_loop_iteration(site, layer, loop):
    model = tiny("llama")
    a, b, times = 1, 3, 3
    v = vec(model.d_model, 9, 3.0)
    iv = dataclasses.replace(ls.add(site, layer, "all", v), loop=loop)
    out = model.run(PROMPT, interventions=[iv], loop=(a, b, times)).logits

    def hooks_on(only):
        def build(hf):
            block = hf.get_submodule(model.adapter.blocks_path)[layer]  # the same object at every repeat
            module = block.mlp if site == "mlp_out" else block
            count = [0]

            def bump(h):
                count[0] += 1
                return h + v if only is None or count[0] - 1 == only else h

            if site == "resid_pre":
                return [(module, "pre", lambda m, args: (bump(args[0]), *args[1:]))]
            return [(module, "post", lambda m, args, o: (bump(o[0]), *o[1:]) if isinstance(o, tuple) else bump(o))]

        return build

    ref, _ = _looped_reference(model, PROMPT, a, b, times, hooks_on(loop))
    assert diff(out, ref.logits) <= 1e-5
    every, _ = _looped_reference(model, PROMPT, a, b, times, hooks_on(None))
    assert diff(out, every.logits) > 1e-4
    unrestricted = model.run(PROMPT, interventions=[ls.add(site, layer, "all", v)], loop=(a, b, times)).logits
    assert diff(unrestricted, every.logits) <= 1e-5


def test_loop_errors():
    model = tiny("llama")
    for bad in [(2, 2, 2), (3, 5, 2), (1, 3, 0), (-1, 2, 2)]:
        with pytest.raises(InterventionError, match=re.escape(f"invalid loop block [{bad[0]}, {bad[1]}) x {bad[2]}")):
            model.run(PROMPT, loop=bad)
    assert_clean(model)
