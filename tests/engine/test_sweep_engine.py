"""engine/sweep.py: a layer sweep equals the per-layer loop of full runs it replaces."""

import pytest
import torch

import layerscope as ls
from layerscope.engine.sweep import sweep_layers
from layerscope.errors import InterventionError
from tests.conftest import tiny
from tests.helpers import assert_clean, hf_logits, site_hook, with_hooks

PROMPTS = ["the capital of france is paris", "hello world", "what is the capital of spain ?"]
pytestmark = pytest.mark.usefixtures("one_thread")


def patch_grid(model, source: str, positions: list[int]):
    """Per layer k: one variant per position p patching ``resid_post[k]`` at p with the source's state."""
    src = model.run(source, capture="resid_post")
    return {
        k: [[ls.patch("resid_post", k, p, src.state("resid_post", k, p))] for p in positions]
        for k in range(model.n_layers)
    }


def hand_patched(model, prompt: str, k: int, p: int, value: torch.Tensor) -> torch.Tensor:
    """Next-token logits of a plain HF forward with a raw hook writing ``value`` at resid_post[k], p."""

    def put(h):
        h = h.clone()
        h[:, p] = value
        return h

    return with_hooks(model, [site_hook(model, "resid_post", k, put)], lambda: hf_logits(model, prompt))[0, -1]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_patch_sweep_equals_hand_patched_runs(arch):
    model = tiny(arch)
    corrupt, clean = "what is the capital of spain ?", "what is the capital of italy ?"
    grid = patch_grid(model, clean, [0, 3, 5, 6])
    source = model.run(clean, capture="resid_post")
    seen = set()
    for chunk in sweep_layers(model, corrupt, grid, progress=False):
        logits = chunk.last_logits()  # [1, V', vocab]
        for v, p in enumerate([0, 3, 5, 6][chunk.variants]):
            expected = hand_patched(model, corrupt, chunk.layer, p, source.state("resid_post", chunk.layer, p)[0])
            torch.testing.assert_close(logits[0, v], expected, atol=1e-5, rtol=1e-5)
            seen.add((chunk.layer, p))
    assert len(seen) == model.n_layers * 4
    assert_clean(model)


def test_chunked_sweep_over_a_padded_batch_equals_one_chunk():
    model = tiny("llama")
    grid = {k: [[ls.random("resid_pre", f"{k}:", "previous", seed=s)] for s in range(3)] for k in range(4)}
    whole = {(c.layer, c.variants.start): c.last_logits() for c in sweep_layers(model, PROMPTS, grid, progress=False)}
    pieces: dict = {}
    for chunk in sweep_layers(model, PROMPTS, grid, batch_budget=1, progress=False):  # one row per chunk
        assert chunk.result.batch.size == 1
        pieces.setdefault(chunk.layer, {})[(chunk.prompts.start, chunk.variants.start)] = chunk.last_logits()[0, 0]
    for k in range(4):
        full = whole[(k, 0)]
        for (p, v), logits in pieces[k].items():
            torch.testing.assert_close(logits, full[p, v], atol=1e-5, rtol=1e-5)
        assert len(pieces[k]) == len(PROMPTS) * 3


def test_sweep_equals_full_runs_without_a_start_layer():
    model = tiny("gpt2")
    grid = {k: [[ls.shuffle("resid_pre", f"{k}:", "previous", seed=1)], [ls.skip_attention(k)]] for k in range(4)}
    for chunk in sweep_layers(model, PROMPTS, grid, progress=False):
        full = model.run(PROMPTS, variants=grid[chunk.layer], logits="last").last_logits.view(len(PROMPTS), 2, -1)
        torch.testing.assert_close(chunk.last_logits(), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_prefix_reuse_in_a_sweep_equals_full_runs(arch):
    model = tiny(arch)
    prompt = PROMPTS[0]
    grid = {k: [[ls.zero("resid_post", k, 4)], [ls.add("resid_pre", k, 5, torch.ones(model.d_model))]] for k in (0, 2)}
    for chunk in sweep_layers(model, prompt, grid, prefix_length=4, progress=False):
        full = model.run(prompt, variants=grid[chunk.layer], logits="last").last_logits
        torch.testing.assert_close(chunk.last_logits()[0], full, atol=1e-5, rtol=1e-5)


def test_variant_below_its_start_layer_is_refused():
    model = tiny("llama")
    with pytest.raises(InterventionError, match="layers >= k"):
        list(sweep_layers(model, PROMPTS, {2: [[ls.zero("resid_post", 1, 0)]]}, progress=False))
    with pytest.raises(InterventionError, match="one prompt"):
        list(sweep_layers(model, PROMPTS, {1: [[]]}, prefix_length=2, progress=False))
    assert_clean(model)


def staggered_grid(model, prompt: str):
    """Per-row start layers (sorted) and one variant per row acting at or above its start."""
    starts = [0, 0, 1, 2, 2, model.n_layers - 1]
    gen = torch.Generator().manual_seed(0)
    variants = [
        [ls.patch("resid_pre", starts[0], 3, torch.randn(model.d_model, generator=gen))],
        [ls.add("resid_post", 1, "all", torch.randn(model.d_model, generator=gen))],
        [ls.random("resid_pre", 1, "previous", seed=4)],
        [ls.zero("resid_post", 2, 5), ls.skip_attention(3)],
        [],
        [ls.patch("resid_pre", model.n_layers - 1, -1, torch.randn(model.d_model, generator=gen))],
    ]
    return starts, variants


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3", "qwen2"])
def test_per_row_start_layers_equal_one_run_per_row(arch):
    """engine/stagger.py: rows joining the batch at their start layer == each row run on its own."""
    model = tiny(arch)
    prompt = PROMPTS[0]
    starts, variants = staggered_grid(model, prompt)
    clean = model.run(prompt, capture="resid_pre")
    states = torch.cat([clean.get("resid_pre", k) for k in starts if k > 0])
    last = model.n_layers - 1
    out = model.run(
        prompt, variants=variants, start_layer=starts, start_states=states, logits="all", capture=("resid_post", last)
    )
    for row, variant in enumerate(variants):
        alone = model.run(prompt, interventions=variant, logits="all", capture=("resid_post", last))
        torch.testing.assert_close(out.logits[row], alone.logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.get("resid_post", last)[row], alone.get("resid_post", last)[0])
    assert_clean(model)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_per_row_start_layers_with_a_reused_prefix(arch):
    model = tiny(arch)
    prompt = PROMPTS[0]
    starts = [0, 1, 1, 3]
    variants = [[ls.zero("resid_pre", k, 4)] for k in starts]
    clean = model.run(prompt, capture="resid_pre", keep_cache=True)
    states = torch.cat([clean.get("resid_pre", k)[:, 3:] for k in starts if k > 0])
    out = model.run(
        prompt, variants=variants, start_layer=starts, start_states=states, logits="last", prefix=clean, prefix_length=3
    )
    full = model.run(prompt, variants=variants, logits="last")
    torch.testing.assert_close(out.last_logits, full.last_logits, atol=1e-5, rtol=1e-5)
    # the prefix run's own cache is untouched: reusing it again gives the same numbers
    again = model.run(
        prompt, variants=variants, start_layer=starts, start_states=states, logits="last", prefix=clean, prefix_length=3
    )
    torch.testing.assert_close(again.last_logits, out.last_logits)


@pytest.mark.parametrize("budget", [None, 1])
def test_staggered_sweep_equals_the_per_layer_sweep(budget):
    model = tiny("llama")
    grid = {
        k: [[ls.random("resid_pre", f"{k}:", "previous", seed=s)] for s in range(2)] + [[ls.freeze(k, "previous")]]
        for k in range(4)
    }
    per_layer = {
        (c.layer, v): c.last_logits()[0, i]
        for c in sweep_layers(model, PROMPTS[2], grid, stagger=False, progress=False)
        for i, v in enumerate(range(c.variants.start, c.variants.stop))
    }
    seen = 0
    for chunk in sweep_layers(model, PROMPTS[2], grid, batch_budget=budget, progress=False):
        for i, v in enumerate(range(chunk.variants.start, chunk.variants.stop)):
            torch.testing.assert_close(chunk.last_logits()[0, i], per_layer[(chunk.layer, v)], atol=1e-5, rtol=1e-5)
            seen += 1
    assert seen == len(per_layer) == 12


def test_per_row_start_layers_refuse_bad_input():
    model = tiny("llama")
    prompt = PROMPTS[0]
    clean = model.run(prompt, capture="resid_pre")
    one = clean.get("resid_pre", 2)
    with pytest.raises(InterventionError, match="sorted"):
        model.run(prompt, variants=[[], []], start_layer=[2, 0], start_states=one)
    with pytest.raises(InterventionError, match="one unpadded prompt"):
        model.run(PROMPTS, variants=[[]], start_layer=[0])
    with pytest.raises(InterventionError, match="one per row"):
        model.run(prompt, variants=[[], []], start_layer=[0])
    with pytest.raises(InterventionError, match="one resid_pre row per row"):
        model.run(prompt, variants=[[], []], start_layer=[2, 2], start_states=one)
    with pytest.raises(InterventionError, match="at or above its start layer"):
        model.run(prompt, variants=[[ls.zero("resid_pre", 1, 0)]], start_layer=[2], start_states=one)
    with pytest.raises(InterventionError, match="loops"):
        model.run(prompt, variants=[[]], start_layer=[0], loop=(1, 3, 2))
    assert_clean(model)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # plain dynamic layers, and sliding-window ones (deep copy)
def test_a_reused_prefix_cache_is_never_changed_by_the_runs_that_extend_it(arch):
    """Each chunk of a sweep extends a private copy of the clean run's cache: the clean cache keeps its
    length and values however many runs read it, and every run gives what a fresh copy gives."""
    import copy

    from layerscope.engine.run import _expand_cache

    model = tiny(arch)
    prompt = "the cat" if arch == "gemma3" else "the capital of france is paris"  # gemma3: a window of 4
    clean = model.run(prompt, keep_cache=True, logits="last")
    cache = clean.past_key_values
    before = copy.deepcopy(cache)
    n = cache.get_seq_length()
    for batch in (1, 3):
        grown = _expand_cache(cache, n - 1, batch)
        assert grown.get_seq_length() == n - 1
        out = model.run(prompt, prefix=clean, prefix_length=n - 1, logits="last")
        assert torch.allclose(out.last_logits, clean.last_logits, atol=1e-5)
    assert cache.get_seq_length() == n
    for layer, old in zip(cache.layers, before.layers, strict=True):
        assert torch.equal(layer.keys, old.keys) and torch.equal(layer.values, old.values)
