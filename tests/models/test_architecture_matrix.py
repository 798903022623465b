"""The architecture matrix: every engine invariant on tiny random models of many architectures.

Each model is saved to a folder and loaded twice from it: through ``ls.load`` (adapter, self-check)
and as the plain Hugging Face model, which is the oracle. Norm weights are perturbed before saving,
so a missing or wrong norm cannot hide behind an identity. A model either passes every check or
is refused at load with a message naming the model class and what it cannot do.
"""

from __future__ import annotations

import copy
import tempfile
from functools import cache

import pytest
import torch

import layerscope as ls
from layerscope.errors import AdapterError
from layerscope.testing import tiny_tokenizer
from layerscope.testing.architectures import DECODERS, ENCODERS, REFUSED, build
from tests.helpers import assert_clean, looped_copy

PROMPT = "the capital of france is paris and"
SHORT = "hello world"
OTHER = "the capital of spain is madrid and"  # same length as PROMPT


@cache
def pair(model_type: str):
    """``(layerscope model, plain HF model)`` loaded from one saved folder."""
    from transformers import AutoModel, AutoModelForCausalLM

    hf, _ = build(model_type)
    folder = tempfile.mkdtemp(prefix=f"ls-matrix-{model_type}-")
    hf.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    model = ls.load(folder, progress=False)
    # AutoTokenizer may rebuild a model-specific tokenizer class from the files (Qwen2's BPE drops
    # words the tiny vocabulary has): the matrix tests models, so every one gets the same tokenizer
    model.tokenizer = tiny_tokenizer()
    auto = AutoModel if model_type in ENCODERS else AutoModelForCausalLM
    plain = auto.from_pretrained(folder).eval()
    return model, plain


def plain_logits(model, plain, prompt: str, **extra) -> torch.Tensor:
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return plain(input_ids=ids, **extra).logits


def _close(a, b, tol=1e-4):
    scale = max(1.0, float(b.abs().max()))
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float((a.detach() - b.detach()).abs().max())
    assert err <= tol * scale, f"max difference {err:.3g}"


@pytest.fixture(scope="module", autouse=True)
def one_thread_matrix():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model_type", DECODERS)
def test_decoder_matrix(model_type):
    model, plain = pair(model_type)
    L = model.n_layers
    ref = plain_logits(model, plain, PROMPT)

    # no-op run: bit-exact with the plain model
    out = model.run(PROMPT, capture=["resid_pre", "resid_post"])
    assert torch.equal(out.logits, ref), "no-op logits differ from the plain model"

    # captures vs the plain model's block inputs and outputs (hooks), and vs hidden_states where
    # the model follows HF's usual convention (Mamba's and RWKV's start after block 0)
    ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    seen = {}
    blocks = plain.get_submodule(model.adapter.blocks_path)

    def record(layer):
        def pre(module, args, kwargs):
            seen[("resid_pre", layer)] = args[0] if args else kwargs["hidden_states"]

        def post(module, args, output):
            seen[("resid_post", layer)] = output[0] if isinstance(output, tuple | list) else output

        return pre, post

    handles = []
    for layer, block in enumerate(blocks):
        pre, post = record(layer)
        handles += [block.register_forward_pre_hook(pre, with_kwargs=True), block.register_forward_hook(post)]
    try:
        with torch.no_grad():
            hidden = plain(input_ids=ids, output_hidden_states=True).hidden_states
    finally:
        for handle in handles:
            handle.remove()
    for (site, layer), states in seen.items():
        assert torch.equal(out.get(site, layer), states), (site, layer)
    if hidden is not None and len(hidden) == L + 1 and torch.equal(hidden[0], seen[("resid_pre", 0)]):
        for layer in range(L - 1):
            assert torch.equal(out.get("resid_post", layer), hidden[layer + 1])

    # the logit lens of the last layer is the model's prediction (values)
    with torch.no_grad():
        lens = model.adapter.unembed_states(out.get("resid_post", L - 1))
    _close(lens, ref, 1e-5)

    # patching a run's own states is a no-op
    patches = [ls.patch("resid_post", l, "all", out.get("resid_post", l)[0]) for l in range(L)]
    assert torch.equal(model.run(PROMPT, interventions=patches).logits, ref)

    # the last-layer patch reproduces the source's logits
    src = model.run(OTHER, capture=("resid_post", L - 1))
    moved = model.run(PROMPT, interventions=[ls.patch("resid_post", L - 1, -1, src.state("resid_post", L - 1, -1))])
    _close(moved.logits[0, -1], src.logits[0, -1], 1e-5)

    # steering vs a hand-written hook on block 1's output
    vector = torch.randn(model.d_model, generator=torch.Generator().manual_seed(3))
    steered = model.run(PROMPT, interventions=[ls.add("resid_post", 1, "all", vector, scale=2.0)]).logits

    def add_hook(module, args, output):
        if isinstance(output, tuple | list):
            return type(output)([output[0] + 2.0 * vector, *output[1:]])
        return output + 2.0 * vector

    blocks = plain.get_submodule(model.adapter.blocks_path)
    handle = blocks[1].register_forward_hook(add_hook)
    try:
        hooked = plain_logits(model, plain, PROMPT)
    finally:
        handle.remove()
    _close(steered, hooked)

    # start layer, and per-row start layers
    k = L // 2
    upper = model.run(PROMPT, start_layer=k, start_states=out.get("resid_pre", k))
    _close(upper.logits, ref)
    starts = [0, 1, k, L - 1]
    rows = model.run(
        PROMPT, variants=[[]] * 4, start_layer=starts, start_states={s: out.get("resid_pre", s) for s in starts},
        logits="last",
    )  # fmt: skip
    _close(rows.last_logits, ref[:, -1].expand(4, -1))

    # a padded row equals the prompt alone
    padded = model.run([PROMPT, SHORT], logits="last")
    alone = model.run(SHORT, logits="last")
    _close(padded.last_logits[1], alone.last_logits[0])
    _close(padded.last_logits[0], ref[0, -1])

    # cached generation: each step's logits vs a full recompute of the plain model
    gen = model.generate([PROMPT, SHORT], max_new_tokens=3, stop_at_eos=False, keep_logits=True)
    for row, prompt in enumerate([PROMPT, SHORT]):
        ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
        for step in range(3):
            with torch.no_grad():
                full = plain(input_ids=ids).logits[0, -1]
            _close(gen.step_logits[row, step], full)
            ids = torch.cat([ids, gen.tokens[row : row + 1, step : step + 1]], dim=1)
    assert_clean(model)


@pytest.mark.parametrize("model_type", DECODERS)
def test_decoder_matrix_loop_and_patching(model_type):
    model, plain = pair(model_type)
    L = model.n_layers

    # loop blocks [1, 3) twice vs an independent looped copy of the plain model
    looped = model.run(PROMPT, loop=(1, 3, 2)).logits
    ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    copy_model, _ = looped_copy(_PlainView(model, plain), 1, 3, 2)
    with torch.no_grad():
        expected = copy_model(input_ids=ids, use_cache=False).logits
    _close(looped, expected)

    # activation-patching cells vs a hand-written hook loop
    from layerscope.methods.patching import activation_patching

    table = activation_patching(model, PROMPT, OTHER, " paris", " madrid", layers=[0, L - 1], progress=False)
    clean = model.run(PROMPT, capture="resid_post")
    answer, wrong = (model.tokenizer.convert_tokens_to_ids(t) for t in ("paris", "madrid"))
    blocks = plain.get_submodule(model.adapter.blocks_path)
    other_ids = model.tokenizer(OTHER, return_tensors="pt")["input_ids"]
    for row in table.itertuples():
        value = clean.get("resid_post", row.layer)[0, row.position]

        def put(module, args, output, value=value, position=row.position):
            hidden = output[0] if isinstance(output, tuple | list) else output
            hidden = hidden.clone()
            hidden[:, position] = value
            return type(output)([hidden, *output[1:]]) if isinstance(output, tuple | list) else hidden

        handle = blocks[row.layer].register_forward_hook(put)
        try:
            with torch.no_grad():
                logits = plain(input_ids=other_ids).logits[0, -1]
        finally:
            handle.remove()
        expected = float(logits[answer] - logits[wrong])
        assert abs(row.value - expected) <= 1e-4 * max(1.0, abs(expected)), (row.layer, row.position)
    assert_clean(model)


class _PlainView:
    """What :func:`tests.helpers.looped_copy` needs: the plain model and where its blocks are."""

    def __init__(self, model, plain):
        self.hf = plain
        self.adapter = model.adapter


#: the shortcuts each architecture cannot take (read off the models: see the module docstring of
#: layerscope.models.checks); every other architecture takes all of them
FALLBACKS = {
    "bloom": {"staggered"},  # ALiBi bias built for one row
    "xglm": {"staggered"},  # exact mask-shape check
    "zamba": {"staggered", "prefix_reuse"},  # concatenates the input embeddings; SSM cache
    "openai-gpt": {"cached_decoding", "prefix_reuse"},  # keeps no cache
    "recurrent_gemma": {"cached_decoding", "prefix_reuse"},  # returns no cache
    "minimax": {"cached_decoding", "prefix_reuse"},  # lightning attention: cached steps differ by ~1e-3
    "rwkv": {"padding", "prefix_reuse"},  # no attention mask; recurrent state
    **{m: {"prefix_reuse"} for m in ("mamba", "mamba2", "falcon_mamba", "jamba", "bamba", "qwen3_next",
                                     "falcon_h1", "lfm2")},  # state-space / conv caches cannot be cut back
}  # fmt: skip


@pytest.mark.parametrize("model_type", DECODERS + ENCODERS)
def test_the_self_check_takes_every_shortcut_the_architecture_allows(model_type):
    """A shortcut refused where the model supports it would only cost speed, but it would also hide
    a bug of ours (a crash inside a check reads as "unsupported"): pin what each architecture gets."""
    model, _ = pair(model_type)
    refused = {check for check, outcome in model.check_report().items() if outcome != "ok"}
    if model_type in ENCODERS:
        refused -= {"cached_decoding", "prefix_reuse"}  # encoders generate nothing
    assert refused == FALLBACKS.get(model_type, set()), model.check_report()


@pytest.mark.parametrize("model_type", ENCODERS)
def test_encoder_matrix(model_type):
    model, plain = pair(model_type)
    L = model.n_layers
    ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = plain(input_ids=ids, output_hidden_states=True)
    out = model.run(PROMPT, capture=["resid_pre", "resid_post"])
    assert torch.equal(out.get("resid_pre", 0), ref.hidden_states[0])
    for layer in range(L - 1):
        assert torch.equal(out.get("resid_post", layer), ref.hidden_states[layer + 1])
    last = out.get("resid_post", L - 1)
    final = model.adapter.final_norm(last) if model.adapter.final_norm is not None else last
    _close(final, ref.last_hidden_state, 1e-5)
    # self-patch no-op, start layer, padding
    patches = [ls.patch("resid_post", l, "all", out.get("resid_post", l)[0]) for l in range(L)]
    patched = model.run(PROMPT, interventions=patches, capture=("resid_post", L - 1))
    assert torch.equal(patched.get("resid_post", L - 1), last)
    k = L // 2
    upper = model.run(PROMPT, start_layer=k, start_states=out.get("resid_pre", k), capture=("resid_post", L - 1))
    _close(upper.get("resid_post", L - 1), last)
    padded = model.run([PROMPT, SHORT], capture=("resid_post", L - 1))
    alone = model.run(SHORT, capture=("resid_post", L - 1))
    _close(padded.get("resid_post", L - 1)[1, -1], alone.get("resid_post", L - 1)[0, -1], 1e-5)


@pytest.mark.parametrize("model_type", sorted(REFUSED))
def test_refused_at_load_with_a_clear_message(model_type, tmp_path):
    hf, _ = build(model_type)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    tiny_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(AdapterError, match=REFUSED[model_type]) as err:
        ls.load(str(tmp_path), progress=False)
    assert type(hf).__name__ in str(err.value)


def test_self_check_is_cached_per_architecture(monkeypatch):
    """A second load of the same architecture and config runs no check."""
    from layerscope.models import checks

    model, _ = pair("llama")
    calls = []
    monkeypatch.setattr(checks, "run_checks", lambda m: calls.append(m) or None)
    again = ls.Model(copy.deepcopy(model.hf), model.tokenizer)
    assert calls == [] and again.caps == model.caps


def test_an_unverifiable_head_is_refused_by_name_and_a_given_head_is_used():
    """A model that changes its logits in a way no module shows: the lens refuses, naming the model
    class and the check; ``head=`` is the way out."""
    from transformers import LlamaForCausalLM

    class CubedLogits(LlamaForCausalLM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits**3
            return out

    hf, config = build("llama")
    odd = CubedLogits(config).eval()
    odd.load_state_dict(hf.state_dict())
    model = ls.Model(odd, tiny_tokenizer(), check_cache=False)
    assert "CubedLogits" in model.check_report()["head"]
    with pytest.raises(AdapterError, match=r"check .head. failed on CubedLogits.*head="):
        model.adapter.unembed_states(torch.zeros(model.d_model))
    from layerscope.methods.patching import activation_patching

    with pytest.raises(AdapterError, match="check 'head' failed"):
        activation_patching(model, PROMPT, OTHER, " paris", " madrid", layers=[0], progress=False)
    assert_clean(model)

    given = ls.Model(odd, tiny_tokenizer(), head=lambda states: odd.lm_head(odd.model.norm(states)) ** 3)
    out = given.run(PROMPT, capture=("resid_post", -1))
    with torch.no_grad():
        _close(given.adapter.unembed_states(out.get("resid_post", given.n_layers - 1)), out.logits, 1e-5)
