"""Patchscopes against independent computations: plain Hugging Face forwards with raw hooks,
hand-written greedy loops, and closed-form least squares (numpy)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from layerscope.errors import LayerscopeError, SiteError
from layerscope.methods.patchscopes import (
    IDENTITY_PROMPT,
    AffineMap,
    LogitLens,
    TunedLens,
    aligned_positions,
    fit_cross_model,
    lens_readout,
    patchscope,
    placeholder_position,
)
from layerscope.methods.patchscopes.attributes import attribute_probe, eval_attributes, mentions
from layerscope.methods.patchscopes.core import layer_pairs
from layerscope.methods.patchscopes.describe import clean_description, eval_describe, rouge_l
from layerscope.methods.patchscopes.evaluate import eval_next_token
from layerscope.testing import tiny_model
from tests.conftest import save_model_dir, tiny
from tests.helpers import assert_clean, run_cli, site_hook, with_hooks

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


SOURCE = "the capital of france is paris"
TARGET = "the capital of x is"
TEXTS = [
    "the capital of france is paris and the capital of spain is madrid",
    "a big red dog was in the old tree by the river",
    "who is the king of italy ? the king is old",
    "two cats and three dogs were on the moon with a small bird",
    "hello world , this model has one layer of token music",
    "the queen of germany speaks german and english with a man",
    "where is the eiffel tower ? it is in paris , in france",
    "seven fish and four birds are in the blue sea near tokyo",
    "the sun is a star and the moon is not a star",
    "what language do they speak in japan ? they speak food",
]


# ---- independent references ---------------------------------------------------------------------


def ids_of(model, text: str) -> torch.Tensor:
    return model.tokenize(text).input_ids


def hf_state(model, text: str, layer: int, pos: int) -> torch.Tensor:
    """resid_post[layer] at ``pos`` from a raw hook on block ``layer`` of a plain HF forward."""
    store = {}

    def keep(h):
        store["h"] = h.clone()
        return h

    with_hooks(model, [site_hook(model, "resid_post", layer, keep)], lambda: model.hf(input_ids=ids_of(model, text)))
    return store["h"][0, pos]


def hf_patched_logits(model, ids: torch.Tensor, layer: int, pos: int, value: torch.Tensor) -> torch.Tensor:
    """Last-position logits of a plain HF forward with resid_post[layer][pos] replaced by ``value``."""

    def put(h):
        h = h.clone()
        h[:, pos] = value
        return h

    out = with_hooks(model, [site_hook(model, "resid_post", layer, put)], lambda: model.hf(input_ids=ids))
    return out.logits[0, -1]


def hf_patched_greedy(model, text: str, layer: int | None, pos: int, value, n: int) -> list[int]:
    """Greedy decoding without a KV cache, the patch re-applied at ``pos`` on every full forward
    (equal to patching the prompt pass once and decoding with the cache)."""
    ids = ids_of(model, text)
    out = []
    for _ in range(n):
        logits = (
            hf_patched_logits(model, ids, layer, pos, value)
            if layer is not None
            else model.hf(input_ids=ids).logits[0, -1]
        )
        nxt = int(logits.argmax())
        out.append(nxt)
        if nxt == model.tokenizer.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def decode(model, ids: list[int]) -> str:
    eos = model.tokenizer.eos_token_id
    if eos in ids:
        ids = ids[: ids.index(eos)]
    return model.tokenizer.decode(ids, skip_special_tokens=False)


# ---- the general Patchscope -----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_patchscope_equals_plain_hooks(arch):
    model = tiny(arch)
    table = patchscope(model, SOURCE, "france", TARGET, [0, 2, 3], [1, 3], max_new_tokens=4)
    fast = patchscope(model, SOURCE, "france", TARGET, [0, 2, 3], [1, 3], max_new_tokens=0)
    assert len(table) == 6 and set(zip(table.source_layer, table.target_layer, strict=True)) == {
        (l, s) for l in (0, 2, 3) for s in (1, 3)
    }
    src_pos = model.tokenize(SOURCE).prompts[0].tokens.index("france")
    tgt_pos = 3  # "the capital of x is": the placeholder x is token 3
    target_ids = ids_of(model, TARGET)
    for row in table.itertuples():
        assert row.source_position == src_pos and row.target_position == tgt_pos
        h = hf_state(model, SOURCE, row.source_layer, src_pos)
        probs = hf_patched_logits(model, target_ids, row.target_layer, tgt_pos, h).softmax(-1)
        assert row.top_token_id == int(probs.argmax())
        assert row.prob == pytest.approx(float(probs.max()), abs=1e-5)
        assert row.text == decode(model, hf_patched_greedy(model, TARGET, row.target_layer, tgt_pos, h, 4))
    # the next-token path (KV prefix + start at l*) gives the same top token and probability
    assert fast["top_token_id"].tolist() == table["top_token_id"].tolist()
    np.testing.assert_allclose(fast["prob"], table["prob"], atol=1e-5)
    assert (fast["text"] == "").all()
    assert_clean(model)


def test_precision_at_1_equals_plain_hook_computation():
    model = tiny("llama")
    texts = TEXTS[:3]
    table = eval_next_token(model, texts, ["patchscope", "logit_lens"], positions="all")
    identity_ids = ids_of(model, IDENTITY_PROMPT)
    last = identity_ids.shape[1] - 1
    for layer in range(model.n_layers):
        hits_ps, hits_ll, surprisal, n = 0, 0, 0.0, 0
        for text in texts:
            ids = ids_of(model, text)
            final = model.hf(input_ids=ids).logits[0].log_softmax(-1)
            for pos in range(1, ids.shape[1]):
                h = hf_state(model, text, layer, pos)
                patched = int(hf_patched_logits(model, identity_ids, layer, last, h).argmax())
                lens = int(model.hf.lm_head(model.hf.model.norm(h)).argmax())
                own = int(final[pos].argmax())
                hits_ps += patched == own
                hits_ll += lens == own
                surprisal -= float(final[pos, patched])
                n += 1
        got = table.set_index(["method", "layer"])
        assert got.loc[("patchscope", layer), "precision_at_1"] == pytest.approx(hits_ps / n)
        assert got.loc[("patchscope", layer), "surprisal"] == pytest.approx(surprisal / n, rel=1e-5)
        assert got.loc[("logit_lens", layer), "precision_at_1"] == pytest.approx(hits_ll / n)
        assert got.loc[("patchscope", layer), "n"] == n
    assert (table[table.layer == model.n_layers - 1]["precision_at_1"] == 1.0).all()


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("layer", [0, 2, 3])
def test_self_patch_reproduces_the_unpatched_run(arch, layer):
    model = tiny(arch)
    prompt = "what is the capital of spain ? it is"
    for pos in (-1, 4):
        row = patchscope(model, prompt, pos, prompt, layer, layer, pos, max_new_tokens=5).iloc[0]
        probs = model.hf(input_ids=ids_of(model, prompt)).logits[0, -1].softmax(-1)
        assert row.top_token_id == int(probs.argmax())
        assert row.prob == pytest.approx(float(probs.max()), abs=1e-6)
        assert row.text == decode(model, hf_patched_greedy(model, prompt, None, 0, None, 5))


def test_batched_equals_one_variant_per_chunk_and_single_runs():
    model = tiny("gpt_neox")
    sources = [SOURCE, ("the king of italy is old", "italy")]
    batched = patchscope(model, sources, "france", TARGET, "all", "all", max_new_tokens=3)
    chunked = patchscope(model, sources, "france", TARGET, "all", "all", max_new_tokens=3, batch_budget="1B")
    pd.testing.assert_frame_equal(batched, chunked, atol=1e-5)
    assert len(batched) == 2 * 4 * 4
    for l, s in [(0, 3), (2, 1)]:
        single = patchscope(model, "the king of italy is old", "italy", TARGET, l, s, max_new_tokens=3).iloc[0]
        row = batched[(batched.source == 1) & (batched.source_layer == l) & (batched.target_layer == s)].iloc[0]
        assert (row.text, row.top_token_id) == (single.text, single.top_token_id)


def test_explicit_layer_pairs_equal_the_same_rows_of_the_full_grid():
    model = tiny("llama")
    full = patchscope(model, SOURCE, "france", TARGET, "all", "all", max_new_tokens=2)
    wanted = [(3, 0), (1, 2), (-1, -2)]
    for spec in (wanted, {3: 0, 1: 2, -1: -2}, "3->0, 1->2, -1->-2"):
        table = patchscope(model, SOURCE, "france", TARGET, target_layers=spec, max_new_tokens=2)
        assert sorted(zip(table.source_layer, table.target_layer, strict=True)) == [(1, 2), (3, 0), (3, 2)]
        for row in table.itertuples():
            same = full[(full.source_layer == row.source_layer) & (full.target_layer == row.target_layer)].iloc[0]
            assert (row.text, row.top_token_id) == (same.text, same.top_token_id)
            assert row.prob == pytest.approx(same.prob, abs=1e-5)
    with pytest.raises(LayerscopeError, match="cannot read the layer pair"):
        patchscope(model, SOURCE, "france", TARGET, target_layers="3->x")
    with pytest.raises(LayerscopeError, match="layer 9 does not exist"):
        patchscope(model, SOURCE, "france", TARGET, target_layers={9: 0})
    with pytest.raises(LayerscopeError, match="not among the source layers"):
        layer_pairs("0,1", "3->0", 4, 4)
    assert_clean(model)


def test_positions_lists_and_target_position():
    model = tiny("llama")
    table = patchscope(model, SOURCE, [1, "france"], TARGET, 2, "same", [0, -1], max_new_tokens=0)
    assert sorted(set(table.source_position)) == [1, 3] and sorted(set(table.target_position)) == [0, 4]
    assert len(table) == 4 and set(table.source_token) == {"capital", "france"}


def test_placeholder_is_a_whole_word():
    model = tiny("llama")
    prompt = model.tokenize("the next x is x ray").prompts[0]  # "next" contains an x
    assert placeholder_position(prompt) == 4
    assert placeholder_position(model.tokenize("the cat").prompts[0]) is None


def test_errors_name_the_problem():
    model, shallow = tiny("llama"), tiny_model("llama", n_layers=3)
    with pytest.raises(LayerscopeError, match="same depth"):
        patchscope(model, SOURCE, target=TARGET, target_model=shallow)
    with pytest.raises(SiteError, match="not in the prompt"):
        patchscope(model, SOURCE, "spain", TARGET, 0, 0)
    with pytest.raises(LayerscopeError, match="no map for"):
        patchscope(model, SOURCE, "last", TARGET, 0, "1,2", mapping={(0, 1): lambda h: h})
    with pytest.raises(LayerscopeError, match="d_model"):
        patchscope(model, SOURCE, "last", TARGET, 0, 0, target_model=tiny_model("llama", d_model=48))
    with pytest.raises(LayerscopeError, match="max_new_tokens"):
        patchscope(model, SOURCE, "last", TARGET, 0, 0, max_new_tokens=-1)
    with pytest.raises(LayerscopeError, match="cannot read source"):
        patchscope(model, [SOURCE, 3], "last", TARGET)
    with pytest.raises(LayerscopeError, match="step"):
        patchscope(model, SOURCE, "last", TARGET, "0:4:0")
    assert_clean(model)


# ---- lenses and maps ---------------------------------------------------------------------------


def test_affine_fit_equals_numpy_lstsq_with_bias():
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(50, 6, generator=g), torch.randn(50, 4, generator=g)
    fitted = AffineMap.fit(X, Y)
    solution = np.linalg.lstsq(np.c_[X.double().numpy(), np.ones(50)], Y.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose(fitted.weight.numpy(), solution[:-1], atol=1e-5)
    np.testing.assert_allclose(fitted.bias.numpy(), solution[-1], atol=1e-5)
    # rank-deficient inputs (a repeated column) take the SVD path: numpy's minimum-norm solution
    Xd = torch.cat([X, X[:, :1]], dim=1)
    fitted = AffineMap.fit(Xd, Y)
    solution = np.linalg.lstsq(np.c_[Xd.double().numpy(), np.ones(50)], Y.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose(fitted.weight.numpy(), solution[:-1], atol=1e-5)
    with pytest.raises(LayerscopeError, match="more than"):
        AffineMap.fit(X[:5], Y[:5])


def test_tuned_lens_fit_equals_closed_form_least_squares():
    model = tiny("llama")
    lens = TunedLens.fit(model, TEXTS)
    L = model.n_layers
    per_layer = {l: [] for l in range(L)}
    for text in TEXTS:
        n = ids_of(model, text).shape[1]
        for l in range(L):
            per_layer[l] += [hf_state(model, text, l, p) for p in range(1, n)]
    Y = torch.stack(per_layer[L - 1]).double().numpy()
    assert lens.metadata["n_positions"] == len(Y) > model.d_model + 1
    for l in range(L - 1):
        X = torch.stack(per_layer[l]).double().numpy()
        solution = np.linalg.lstsq(np.c_[X, np.ones(len(X))], Y, rcond=None)[0]
        np.testing.assert_allclose(lens.maps[l].weight.numpy(), solution[:-1], atol=2e-4)
        np.testing.assert_allclose(lens.maps[l].bias.numpy(), solution[-1], atol=2e-4)
    h = torch.randn(3, model.d_model)
    assert torch.equal(lens.transform(h, L - 1), h)  # the last layer is the exact identity


def test_tuned_lens_save_load_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path / "cache"))
    model = tiny("llama")
    first = TunedLens.cached(model, TEXTS)
    assert not first.from_cache and first.path.is_file()
    second = TunedLens.cached(model, TEXTS)
    assert second.from_cache and second.path == first.path
    for l in first.maps:
        assert torch.equal(first.maps[l].weight, second.maps[l].weight)
    path = first.save(tmp_path / "lens.safetensors")
    loaded = TunedLens.load(path, model)
    assert torch.equal(loaded.maps[1].bias, first.maps[1].bias)
    with pytest.raises(LayerscopeError, match="not tiny-llama|fit one for this model"):
        TunedLens.load(path, tiny_model("llama", n_layers=3))
    with pytest.raises(LayerscopeError, match="no map file"):
        TunedLens.load(tmp_path / "missing.safetensors")


def test_lenses_are_patchscopes_at_the_last_layer():
    """Logit / tuned lens = the Patchscope with T = S, i* = i, l* = L-1, f = identity / the affine map."""
    model = tiny("llama")
    last = model.n_layers - 1
    prompt = "the capital of spain is madrid"
    lens = TunedLens.fit(model, TEXTS)
    for readout, mapping in [(LogitLens(), None), (lens, lens.as_mapping())]:
        table = lens_readout(model, readout, prompt, [2, 4], "all")
        for pos in (2, 4):  # the target is S up to i (the next token is read at T's last position)
            target = " ".join(prompt.split()[: pos + 1])
            scope = patchscope(model, prompt, pos, target, "all", last, -1, mapping=mapping, max_new_tokens=0)
            merged = table[table.source_position == pos].merge(scope, on="source_layer", suffixes=("", "_ps"))
            assert len(merged) == model.n_layers
            assert (merged.top_token_id == merged.top_token_id_ps).all()
            np.testing.assert_allclose(merged.prob, merged.prob_ps, atol=1e-5)
    from layerscope.methods.lens.api import logit_lens

    ref = logit_lens(model, prompt)
    ref = ref[ref.position.isin([2, 4])].sort_values(["layer", "position"])
    ours = lens_readout(model, LogitLens(), prompt, [2, 4]).sort_values(["source_layer", "source_position"])
    assert ours.top_token.tolist() == ref.top_token.tolist()


class _FakeTokenizer:
    def __init__(self, pattern):
        self.pattern = pattern

    def __call__(self, text, return_offsets_mapping=False):
        import re

        spans = [(0, 0)] + [m.span() for m in re.finditer(self.pattern, text)]  # a BOS with an empty span
        return {"input_ids": list(range(len(spans))), "offset_mapping": spans}


class _Fake:
    def __init__(self, pattern):
        self.tokenizer = _FakeTokenizer(pattern)


def test_aligned_positions_by_character_end():
    words = _Fake(r"\s?\w+|\s?[^\w\s]")  # "1135" one token
    digits = _Fake(r"\s?[^\W\d]+|\d|\s?[^\w\s]")  # "1135" four tokens
    text = "cat 1135 is."
    # words: BOS, cat(0-3), ' 1135'(3-8), ' is'(8-11), '.'(11-12); digits: BOS, cat, 1, 1, 3, 5(7-8), ' is', '.'
    assert aligned_positions(words, digits, text, skip_first=False) == [(1, 1), (2, 5), (3, 6), (4, 7)]
    assert aligned_positions(words, digits, text) == [(2, 5), (3, 6), (4, 7)]


def test_cross_model_map_and_patch():
    a, b = tiny("llama"), tiny_model("gpt2", d_model=48)
    maps = fit_cross_model(a, b, [(1, 2), (3, 0)], TEXTS)
    # closed form on hook-captured states at aligned (here identical, first skipped) positions
    X, Y = [], []
    for text in TEXTS:
        for pa, pb in aligned_positions(a, b, text):
            X.append(hf_state(a, text, 1, pa))
            Y.append(hf_state(b, text, 2, pb))
    X, Y = torch.stack(X).double().numpy(), torch.stack(Y).double().numpy()
    solution = np.linalg.lstsq(np.c_[X, np.ones(len(X))], Y, rcond=None)[0]
    np.testing.assert_allclose(maps[(1, 2)].weight.numpy(), solution[:-1], atol=2e-4)
    table = patchscope(a, SOURCE, "france", TARGET, 1, 2, target_model=b, mapping=maps, max_new_tokens=0)
    assert len(table) == 1
    row = table.iloc[0]
    value = maps[(1, 2)](hf_state(a, SOURCE, 1, 3))
    probs = hf_patched_logits(b, ids_of(b, TARGET), 2, 3, value).softmax(-1)
    assert row.top_token_id == int(probs.argmax())
    assert row.prob == pytest.approx(float(probs.max()), abs=1e-5)


# ---- evaluations ------------------------------------------------------------------------------------


def test_mentions_and_descriptions():
    assert mentions("It is the euro.", ["Euro"]) and not mentions("neurology", ["euro", "eur"])
    assert mentions("Whales are mammals", ["mammal"]) and mentions("Paris, France", ["Lyon", "paris"])
    assert mentions("symbol Fe here", ["Fe"]) and not mentions("feline", ["Fe"])
    assert clean_description(": German physicist, Isaac Newton: English") == "German physicist"
    assert clean_description(" :American actor\nmore") == "American actor"
    assert clean_description("\n\nTech company, Paris: city") == "Tech company"
    assert rouge_l("theoretical physicist", "theoretical physicist") == 1.0
    assert rouge_l("banana", "theoretical physicist") == 0.0


def test_attribute_probe_counts_unlearnable_items_as_wrong():
    from layerscope.methods.patchscopes.core import Source, capture_sources
    from layerscope.readout.probes import probe_accuracy

    model = tiny("llama")
    objects = ["paris"] * 4 + ["rome"] * 4 + ["madrid"] * 2  # madrid has fewer subjects than folds
    items = [{"source": t, "subject": t.split()[1], "object": o} for t, o in zip(TEXTS, objects, strict=True)]
    table = attribute_probe(model, items, [1, 3], folds=3)
    states, _ = capture_sources(model, [Source(i["source"], i["subject"]) for i in items], [1, 3])
    for k, row in enumerate(table.itertuples()):
        expected, _ = probe_accuracy(states[k, :8].double().numpy(), objects[:8], folds=3)
        assert row.learnable == 8 and row.n == 10
        assert row.probe_accuracy == pytest.approx(expected * 8 / 10)


def test_eval_attributes_and_resume(tmp_path, monkeypatch):
    model = tiny("llama")
    resume = tmp_path / "attr.jsonl"
    kwargs = dict(limit=2, source_layers="0,3", target_layers="1", max_new_tokens=2, resume=str(resume))
    result = eval_attributes(model, ["country_capital", "element_symbol"], **kwargs)
    pairs, summary = result["pairs"], result["summary"]
    assert set(pairs.relation) == {"country_capital", "element_symbol"}
    assert len(pairs) == 4 and (pairs.n == 2).all()
    items = result["items"]
    assert items.groupby(["relation", "source_layer", "target_layer"])["correct"].mean().tolist() == pytest.approx(
        pairs.set_index(["relation", "source_layer", "target_layer"])["accuracy"].tolist()
    )
    assert {"patchscope_best", "probe_best", "probe_learnable"} <= set(summary.columns)
    # a rerun with the checkpoint does not run the Patchscope again
    import layerscope.methods.patchscopes.attributes as ev

    monkeypatch.setattr(ev, "patchscope", lambda *a, **k: pytest.fail("recomputed a finished relation"))
    again = eval_attributes(model, ["country_capital", "element_symbol"], **kwargs)
    pd.testing.assert_frame_equal(again["pairs"], pairs)


def test_eval_describe_rows():
    model = tiny("llama")
    entities = [{"entity": "paris", "description": "capital of france"}, {"entity": "tokyo", "description": "city"}]
    result = eval_describe(model, entities, layers="0,3", max_new_tokens=3)
    items = result["items"]
    assert len(items) == 4 and set(items.layer) == {0, 3}
    for row in items.itertuples():
        assert row.rouge_l == pytest.approx(rouge_l(clean_description(row.text), row.reference))
    assert result["layers"]["n"].tolist() == [2, 2]


# ---- CLI --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir("llama", tmp_path_factory.mktemp("tiny-llama-ps"))


def test_cli_patchscope_json_and_readable(capsys, model_dir):
    argv = ["patchscope", "--model", model_dir, "--source", SOURCE, "--position", "france", "--target", TARGET]
    code, out, _ = run_cli(
        capsys, *argv, "--source-layers", "0,3", "--target-layers", "all", "--max-new-tokens", "2", "--json"
    )
    rows = json.loads(out)
    assert code == 0 and len(rows) == 8
    assert {"source_layer", "target_layer", "source_position", "target_position", "text", "top_token", "prob"} <= set(
        rows[0]
    )
    code, out, _ = run_cli(capsys, *argv, "--source-layers", "1", "--max-new-tokens", "0")
    assert code == 0 and "top_token" in out and out.count("\n") == 2


def test_cli_cross_model_patchscope(capsys, model_dir, tmp_path):
    other = save_model_dir("gpt2", tmp_path / "gpt2")
    argv = ["patchscope", "--model", model_dir, "--source", SOURCE, "--target", TARGET, "--target-model", other]
    code, out, err = run_cli(
        capsys,
        *argv,
        "--source-layers",
        "1",
        "--target-layers",
        "0,2",
        "--map-texts",
        "60",
        "--max-new-tokens",
        "0",
        "--json",
    )
    rows = json.loads(out)
    assert code == 0 and [(r["source_layer"], r["target_layer"]) for r in rows] == [(1, 0), (1, 2)]
    assert "fitting 2 affine maps" in err
    code, out, err = run_cli(
        capsys, *argv, "--target-layers", "1->0,3->2", "--map-texts", "60", "--max-new-tokens", "0", "--json"
    )
    assert code == 0 and [(r["source_layer"], r["target_layer"]) for r in json.loads(out)] == [(1, 0), (3, 2)]
    assert "fitting 2 affine maps" in err
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--target-layers explicitly" in err


def test_cli_eval_next_token_last_layer_is_one(capsys, model_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:2]))
    code, out, err = run_cli(
        capsys, "eval", "next-token", "--model", model_dir, "--texts", str(texts), "--methods",
        "patchscope,logit-lens", "--positions", "3", "--json", "--out", str(tmp_path / "nt.png"),
    )  # fmt: skip
    rows = json.loads(out)
    assert code == 0 and (tmp_path / "nt.png").is_file()
    assert {r["method"] for r in rows} == {"patchscope", "logit_lens"} and all(r["n"] == 6 for r in rows)
    assert all(r["precision_at_1"] == 1.0 for r in rows if r["layer"] == 3)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["patchscope", "--source", SOURCE, "--position", "spain"], "not in the prompt"),
        (["patchscope", "--source", SOURCE, "--source-layers", "9"], "layer 9 does not exist"),
        (["eval", "next-token", "--positions", "0"], "positive integer"),
        (["eval", "next-token", "--methods", "magic"], "unknown method"),
        (["eval", "attributes", "--relations", "nope", "--no-probe"], "Unknown relation"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(capsys, model_dir, argv, message):
    code, out, err = run_cli(capsys, *argv, "--model", model_dir)
    lines = [line for line in err.splitlines() if line.startswith("layerscope: error")]
    assert code == 2 and out == "" and len(lines) == 1 and message in lines[0]


@pytest.mark.parametrize("action", ["next-token", "attributes", "describe"])
def test_cli_eval_help(capsys, action):
    from layerscope.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", action, "--help"])
    assert exit_info.value.code == 0 and "--json" in capsys.readouterr().out


# ---- the real default model ----------------------------------------------------------------------


@pytest.mark.integration
def test_default_model_identity_last_layer_is_its_own_prediction(default_model):
    model = default_model
    prompt = "The capital of France is"
    table = patchscope(model, prompt, "last", IDENTITY_PROMPT, "all", "same", max_new_tokens=0)
    own = int(model.run(prompt, logits="last").last_logits[0].argmax())
    assert len(table) == model.n_layers
    assert int(table[table.source_layer == model.n_layers - 1].top_token_id.iloc[0]) == own


def test_demo_section_on_a_tiny_model(tmp_path, monkeypatch):
    from layerscope.methods.patchscopes.report import DEMO_SECTIONS
    from layerscope.results.report import Report

    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path / "cache"))
    ((name, section),) = DEMO_SECTIONS
    report = Report("demo")
    rows = section(tiny("llama"), report, tmp_path)
    assert name == "patchscopes" and (tmp_path / "patchscope_next_token.png").is_file()
    assert {r["metric"] for r in rows} >= {"description", "precision_at_1_patchscope", "precision_at_1_tuned_lens"}


def test_demo_lens_prefers_the_cached_full_lens(tmp_path, monkeypatch):
    # the demo fits a cheap lens when the full one is not cached, and reuses the full one when it is
    from layerscope.datasets import corpus_split
    from layerscope.methods.patchscopes.report import DEMO_LENS_TEXTS, demo_lens

    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path / "cache"))
    model = tiny("llama")
    fit_texts = corpus_split()[0]
    lens, note = demo_lens(model)
    assert lens.metadata["n_texts"] == DEMO_LENS_TEXTS and str(DEMO_LENS_TEXTS) in note
    assert not TunedLens.cache_path(model, fit_texts).exists()
    full = TunedLens.cached(model)
    lens, note = demo_lens(model)
    assert lens.metadata["n_texts"] == len(fit_texts) == full.metadata["n_texts"]
    assert lens.path == TunedLens.cache_path(model, fit_texts)


def test_no_winner_where_the_probe_cannot_score():
    from layerscope.methods.patchscopes.attributes import _summary

    model = tiny("llama")
    items = [{"source": t, "subject": t.split()[1], "object": o} for t, o in zip(TEXTS[:3], "abc", strict=True)]
    probe = attribute_probe(model, items, [1, 3], folds=3)  # every object seen once: nothing to learn
    assert probe["probe_accuracy"].isna().all() and (probe["learnable"] == 0).all()
    pairs = pd.DataFrame([{"relation": "r", "source_layer": 1, "target_layer": 1, "accuracy": 1 / 3, "n": 3}])
    (row,) = _summary(pairs, probe.assign(relation="r")).to_dict("records")
    assert row["winner"] == "none" and row["patchscope_n"] == 3 and row["probe_n"] == 3
    scored = probe.assign(relation="r", probe_accuracy=[0.5, 0.2])
    (row,) = _summary(pairs, scored).to_dict("records")
    assert row["winner"] == "probe" and row["probe_layer"] == 1
    (row,) = _summary(pairs.assign(accuracy=0.5), scored).to_dict("records")
    assert row["winner"] == "tie"


def test_cli_next_token_limit_applies_to_the_default_texts(capsys, model_dir):
    argv = ["eval", "next-token", "--model", model_dir, "--methods", "logit-lens", "--positions", "2", "--json"]
    code, out, _ = run_cli(capsys, *argv, "--limit", "2")
    rows = json.loads(out)
    assert code == 0 and {r["n"] for r in rows} == {4}  # 2 texts x 2 positions, not the whole held-out split


def test_readme_capital_example_works_on_the_default_model(default_model, capsys):
    """The README's example shows the method working: each country's state reads as its capital."""
    target = "Japan: Tokyo; Britain: London; Russia: Moscow; x:"
    for country, capital in (("Italy", " Rome"), ("France", " Paris"), ("Germany", " Berlin")):
        argv = ["patchscope", "--source", f"I visited {country} last year.", "--position", country]
        code, out, _ = run_cli(
            capsys, *argv, "--target", target, "--source-layers", "2,4,8", "--max-new-tokens", "1", "--json"
        )
        assert code == 0 and {r["top_token"] for r in json.loads(out)} == {capital}, country
