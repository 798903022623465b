"""layerscope.methods.patching.api: the (layer, position) patching grid vs a hand-written HF hook loop, and the CLI."""

import json

import pytest
import torch

from layerscope.engine.chunking import row_bytes
from layerscope.engine.interventions import patch
from layerscope.engine.plan import compile_plan
from layerscope.errors import LayerscopeError
from layerscope.methods.patching.api import GROUPINGS, activation_patching, plan_tiles
from tests.conftest import tiny
from tests.helpers import assert_clean, hf_logits, run_cli, site_hook, with_hooks

pytestmark = pytest.mark.usefixtures("one_thread")

CLEAN = "the eiffel tower is located in the city of"
CORRUPT = "the colosseum tower is located in the city of"


def hand_grid(model, site: str, clean: str = CLEAN, corrupt: str = CORRUPT) -> torch.Tensor:
    """``[L, T]`` logit(paris) - logit(rome): one plain HF forward per cell with a raw hook writing the clean state."""
    source = {}
    hooks = [
        site_hook(model, site, l, lambda h, l=l: source.__setitem__(l, h.clone()) or h) for l in range(model.n_layers)
    ]
    with_hooks(model, hooks, lambda: hf_logits(model, clean))
    a, w = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("paris", "rome"))
    n_pos = len(model.tokenize(corrupt).prompts[0])
    grid = torch.empty(model.n_layers, n_pos)
    for l in range(model.n_layers):
        for p in range(n_pos):

            def put(h, l=l, p=p):
                h = h.clone()
                h[:, p] = source[l][:, p]
                return h

            logits = with_hooks(model, [site_hook(model, site, l, put)], lambda: hf_logits(model, corrupt))[0, -1]
            grid[l, p] = logits[a] - logits[w]
    return grid


def as_grid(table) -> torch.Tensor:
    return torch.tensor(table.pivot(index="layer", columns="position", values="value").sort_index().values).float()


@pytest.mark.parametrize(
    ("arch", "site"),
    [
        ("llama", "resid_post"),
        ("llama", "resid_pre"),
        ("llama", "attn_out"),
        ("llama", "mlp_out"),
        ("gpt2", "resid_post"),
        ("gpt2", "mlp_out"),
        ("gemma3", "resid_post"),
        ("qwen2", "attn_out"),
    ],
)
def test_grid_equals_a_hand_written_hook_loop(arch, site):
    model = tiny(arch)
    table = activation_patching(model, CLEAN, CORRUPT, "paris", "rome", site=site, progress=False)
    expected = hand_grid(model, site)
    assert list(table.columns) == ["model", "method", "layer", "position", "token", "value", "skipped"] + [
        "site", "answer", "wrong", "clean_value", "corrupt_value"
    ]
    assert len(table) == expected.numel()
    torch.testing.assert_close(as_grid(table), expected, atol=1e-4, rtol=1e-4)
    # the unpatched metrics: patching resid_post of the last layer everywhere is the clean run
    a, w = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("paris", "rome"))
    clean_logits, corrupt_logits = hf_logits(model, CLEAN)[0, -1], hf_logits(model, CORRUPT)[0, -1]
    assert table["clean_value"].iloc[0] == pytest.approx(float(clean_logits[a] - clean_logits[w]), abs=1e-4)
    assert table["corrupt_value"].iloc[0] == pytest.approx(float(corrupt_logits[a] - corrupt_logits[w]), abs=1e-4)
    assert_clean(model)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_every_grouping_and_chunking_gives_the_same_grid(arch):
    model = tiny(arch)
    reference = as_grid(activation_patching(model, CLEAN, CORRUPT, "paris", "rome", grouping="none", progress=False))
    for grouping in GROUPINGS:
        for budget in (None, 1):  # 1 byte: one row per forward chunk
            table = activation_patching(
                model, CLEAN, CORRUPT, "paris", "rome", grouping=grouping, batch_budget=budget, progress=False
            )
            torch.testing.assert_close(as_grid(table), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("arch", "site"), [("llama", "resid_post"), ("gpt2", "attn_out")])
def test_cells_in_the_shared_prefix_are_answered_without_running(arch, site):
    model = tiny(arch)
    clean = "we walked all day by the river and then saw the eiffel tower in the city of"
    corrupt = "we walked all day by the river and then saw the colosseum tower in the city of"
    ids = model.tokenize(clean).input_ids[0], model.tokenize(corrupt).input_ids[0]
    shared = int((ids[0] != ids[1]).nonzero()[0])
    assert shared >= 8  # the test needs a long common prefix
    skipped = activation_patching(model, clean, corrupt, "paris", "rome", site=site, progress=False)
    assert skipped["skipped"].sum() == shared * model.n_layers
    every = activation_patching(model, clean, corrupt, "paris", "rome", site=site, skip_shared_prefix=False)
    assert every["skipped"].sum() == 0
    expected = hand_grid(model, site, clean, corrupt)
    torch.testing.assert_close(as_grid(skipped), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(as_grid(every), expected, atol=1e-4, rtol=1e-4)
    # a skipped cell holds the corrupt run's own metric
    head = skipped[skipped.position < shared]
    assert (head.value == skipped["corrupt_value"].iloc[0]).all()
    assert_clean(model)


def test_prefix_reuse_path_equals_the_plain_path():
    model = tiny("llama")
    n_pos = len(model.tokenize(CORRUPT).prompts[0])
    # "position" tiles reuse the prefix before each position; "layer" tiles never do
    with_prefix = plan_tiles("resid_post", range(4), range(n_pos), 4, n_pos, "position")
    assert all(t.prefix == t.positions[0] and len(t.positions) == 1 for t in with_prefix)
    assert all(t.prefix == 0 for t in plan_tiles("resid_post", range(4), range(n_pos), 4, n_pos, "layer"))
    plain = activation_patching(model, CLEAN, CORRUPT, "paris", "rome", grouping="layer", progress=False)
    reused = activation_patching(model, CLEAN, CORRUPT, "paris", "rome", grouping="position", progress=False)
    torch.testing.assert_close(as_grid(reused), as_grid(plain), atol=1e-5, rtol=1e-5)
    subset = activation_patching(
        model, CLEAN, CORRUPT, "paris", "rome", layers="1:3", positions=[2, 5, 8], grouping="position", progress=False
    )
    assert sorted(set(subset["layer"])) == [1, 2] and sorted(set(subset["position"])) == [2, 5, 8]
    full = plain.set_index(["layer", "position"])["value"]
    for row in subset.itertuples():
        assert row.value == pytest.approx(full[(row.layer, row.position)], abs=1e-5)


@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("site", ["resid_post", "mlp_out"])
def test_tiles_cover_every_cell_once(grouping, site):
    layers, positions = list(range(6)), list(range(9))
    tiles = plan_tiles(site, layers, positions, 6, 9, grouping, rows_fit=lambda tokens: 7)
    cells = [(l, p) for t in tiles for l in t.layers for p in t.positions]
    assert sorted(cells) == [(l, p) for l in layers for p in positions]
    for t in tiles:  # a tile never starts above a layer it patches, nor reuses a prefix past a position it patches
        assert t.start <= min(l + 1 if site == "resid_post" and l < 5 else l for l in t.layers)
        assert t.prefix <= min(t.positions)


def test_auto_tiling_follows_the_cost_of_a_call():
    layers, positions = list(range(8)), list(range(12))
    cheap_calls = plan_tiles("resid_post", layers, positions, 8, 12, "auto", call_cost=0.0)
    dear_calls = plan_tiles("resid_post", layers, positions, 8, 12, "auto", call_cost=1e6)

    def work(tiles):  # arithmetic in (token x block) units, as in the cost model
        return sum((8 - t.start) * t.n_cells * (12 - t.prefix) for t in tiles)

    assert len(dear_calls) < len(cheap_calls)
    assert work(cheap_calls) < work(dear_calls)
    # with free calls, every cell runs alone: exactly the blocks above it and the positions from it on
    assert work(cheap_calls) == sum((8 - min(l + 1, 7)) * (12 - p) for l in layers for p in positions)


def test_bad_input_is_refused_with_a_useful_message():
    model = tiny("llama")
    with pytest.raises(LayerscopeError, match=r"answer 'paris rome' is 2 tokens"):
        activation_patching(model, CLEAN, CORRUPT, "paris rome", "rome", progress=False)
    with pytest.raises(LayerscopeError, match="wrong is empty"):
        activation_patching(model, CLEAN, CORRUPT, "paris", "", progress=False)
    with pytest.raises(LayerscopeError, match="same number of tokens"):
        activation_patching(model, CLEAN, "the colosseum is located in the city of", "paris", "rome", progress=False)
    with pytest.raises(LayerscopeError, match="unknown site"):
        activation_patching(model, CLEAN, CORRUPT, "paris", "rome", site="resid_mid", progress=False)
    with pytest.raises(LayerscopeError, match="unknown grouping"):
        activation_patching(model, CLEAN, CORRUPT, "paris", "rome", grouping="diagonal", progress=False)
    with pytest.raises(LayerscopeError, match="budget"):
        activation_patching(model, CLEAN, CORRUPT, "paris", "rome", batch_budget="lots", progress=False)
    with pytest.raises(LayerscopeError, match="layer 9 does not exist"):
        activation_patching(model, CLEAN, CORRUPT, "paris", "rome", layers=9, progress=False)
    with pytest.raises(LayerscopeError, match="causal"):
        activation_patching(tiny("bert"), CLEAN, CORRUPT, "paris", "rome", progress=False)
    assert_clean(model)


def test_many_patches_at_one_site_fuse_into_one_write():
    """engine/plan.py: V variants' patches at one site compile to one indexed write, with the same effect."""
    model = tiny("llama")
    batch = model.tokenize(CORRUPT).repeat(40)
    values = torch.randn(40, model.d_model)
    ivs = [patch("resid_pre", 2, v % 9, values[v]).on_rows([v]) for v in range(40)]
    plan = compile_plan(ivs, batch, model.n_layers, model.d_model)
    assert len(plan.at("resid_pre", 2)) == 1
    # a second patch of an already patched row starts a new write, so the later value wins
    again = compile_plan(ivs + [patch("resid_pre", 2, 0, values[1]).on_rows([0])], batch, 4, model.d_model)
    assert len(again.at("resid_pre", 2)) == 2
    run = model.run(CORRUPT, variants=[[patch("resid_pre", 2, v % 9, values[v])] for v in range(40)], logits="last")
    for v in (0, 17, 39):
        one = model.run(CORRUPT, interventions=[patch("resid_pre", 2, v % 9, values[v])], logits="last")
        torch.testing.assert_close(run.last_logits[v], one.last_logits[0], atol=1e-5, rtol=1e-5)


def test_row_bytes_counts_a_reused_prefix_cache():
    model = tiny("llama")
    config = model.hf.config
    heads, head_dim = config.num_attention_heads, model.d_model // config.num_attention_heads
    kv_layer = 2 * config.num_key_value_heads * head_dim  # K and V of one layer, per position
    # attending over 6 cached positions from 4 new ones: K and V repeated to every head, and 4 x 6 scores
    attention = 2 * heads * head_dim * 6 + heads * 4 * 6
    assert (
        row_bytes(model, 4, cached_positions=6) - row_bytes(model, 4) == (kv_layer * model.n_layers * 6 + attention) * 4
    )
    # a staggered sweep widens one layer's cache at a time
    assert (
        row_bytes(model, 4, cached_positions=6, cached_layers=1) - row_bytes(model, 4) == (kv_layer * 6 + attention) * 4
    )


def test_cli_json_rows_heatmap_and_errors(capsys, tmp_path, monkeypatch):
    import layerscope.models.model as model_module

    model = tiny("llama")
    monkeypatch.setattr(model_module, "load", lambda *a, **k: model)
    png = tmp_path / "grid.png"
    args = ["sweep", "--clean", CLEAN, "--corrupt", CORRUPT, "--answer", "paris", "--wrong", "rome"]
    code, out, err = run_cli(capsys, *args, "--json", "--out", str(png), "--batch-budget", "1MB")
    assert code == 0, err
    rows = json.loads(out)
    assert set(rows[0]) == {"model", "method", "layer", "position", "token", "value", "skipped"} | {
        "site", "answer", "wrong", "clean_value", "corrupt_value"
    }
    assert len(rows) == model.n_layers * len(model.tokenize(CORRUPT).prompts[0])
    table = activation_patching(model, CLEAN, CORRUPT, "paris", "rome", progress=False)
    for row, expected in zip(rows, table.itertuples(), strict=True):
        assert (row["layer"], row["position"]) == (expected.layer, expected.position)
        assert row["value"] == pytest.approx(expected.value, abs=1e-5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert f"{model.n_layers} of {len(rows)} cells were no-op patches" in err  # the shared first token
    code, out, err = run_cli(capsys, *args, "--json", "--run-shared-prefix")
    assert "0 of" in err
    for row, again in zip(rows, json.loads(out), strict=True):
        assert again["value"] == pytest.approx(row["value"], abs=1e-5)

    code, out, err = run_cli(capsys, *args, "--site", "mlp_out", "--layers", "1:3")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["2", "1"]  # readable: a header, then layers

    for bad, message in [
        (["--answer", "paris rome"], "is 2 tokens"),
        (["--corrupt", "the colosseum is in the city of"], "same number of tokens"),
        (["--batch-budget", "lots"], "budget"),
        (["--out", str(tmp_path / "grid.svg")], ".png"),
    ]:
        argv = list(args)
        for flag, value in zip(bad[::2], bad[1::2], strict=True):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == ""
        errors = [line for line in err.splitlines() if line.startswith("layerscope: error:")]
        assert len(errors) == 1 and message in errors[0]
    assert_clean(model)


def test_demo_section_writes_the_heatmap(tmp_path, monkeypatch):
    import layerscope.methods.patching.report as sweep_cli
    from layerscope.methods.patching.report import DEMO_SECTIONS
    from layerscope.results.report import Report

    monkeypatch.setattr(sweep_cli, "DEMO_PAIR", (CLEAN, CORRUPT, "paris", "rome"))  # the tiny vocabulary
    model = tiny("llama")
    name, section = DEMO_SECTIONS[0]
    report = Report("test")
    rows = section(model, report, tmp_path)
    assert (tmp_path / "patching.png").read_bytes()[:4] == b"\x89PNG"
    assert len(rows) == model.n_layers and {r["layer"] for r in rows} == set(range(model.n_layers))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3", "gpt_neox", "qwen2"])
def test_a_run_without_logits_skips_the_unembedding(arch):
    """engine/run.py: ``logits=None`` does not run the unembedding at all, and captures are unchanged."""
    model = tiny(arch)
    calls = []
    handle = model.adapter.unembed.register_forward_hook(lambda m, a, o: calls.append(o.shape))
    try:
        bare = model.run(CORRUPT, logits=None, capture=("resid_post", -1))
        assert bare.logits is None
        assert all(shape[1] == 0 for shape in calls)  # called on zero positions, or not at all
        full = model.run(CORRUPT, logits="last", capture=("resid_post", -1))
    finally:
        handle.remove()
    last = model.n_layers - 1
    torch.testing.assert_close(bare.get("resid_post", last), full.get("resid_post", last), atol=0, rtol=0)
    # and the two-token readout of the patching sweep equals the model's own logits
    a, w = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("paris", "rome"))
    pair = model.adapter.unembed_states(bare.get("resid_post", last)[:, -1], tokens=[a, w])
    torch.testing.assert_close(pair[0], full.last_logits[0, [a, w]], atol=1e-5, rtol=1e-5)


@pytest.mark.integration
def test_default_model_eiffel_invariants(default_model):
    """Patching the clean last-layer state at the last position gives the clean metric; patching a
    position whose token is the same in both prompts ('The', 'is', ...) at layer 0 changes nothing."""
    clean, corrupt = "The Eiffel Tower is located in the city of", "The Colosseum is located in the city of"
    table = activation_patching(default_model, clean, corrupt, " Paris", " Rome", layers=[0, -1], progress=False)
    cell = table.set_index(["layer", "position"])["value"]
    last = default_model.n_layers - 1
    assert table["clean_value"].iloc[0] > 0 > table["corrupt_value"].iloc[0]  # Paris vs Rome
    assert cell[(last, 9)] == pytest.approx(table["clean_value"].iloc[0], abs=1e-3)
    assert cell[(0, 0)] == pytest.approx(table["corrupt_value"].iloc[0], abs=1e-3)  # 'The' == 'The'
    assert cell[(last, 3)] == pytest.approx(table["corrupt_value"].iloc[0], abs=1e-3)  # last layer, not last pos


def test_bfloat16_grid_follows_the_hand_written_loop_in_the_same_dtype():
    """The GPU path's dtype: a bf16 model runs the whole sweep (staggered rows, prefix cache, readout) in bf16."""
    from layerscope.testing import tiny_model

    model = tiny_model("llama")
    model.hf.to(torch.bfloat16)
    table = activation_patching(model, CLEAN, CORRUPT, "paris", "rome", progress=False)
    expected = hand_grid(model, "resid_post")
    got = as_grid(table)
    assert torch.isfinite(got).all()
    # bf16 keeps ~3 significant digits; batch shapes differ from the loop's, so rounding differs
    torch.testing.assert_close(got, expected.float(), atol=0.05 * float(expected.abs().max()), rtol=0.05)
    assert_clean(model)


EIFFEL = ("The Eiffel Tower is located in the city of", "The Colosseum is located in the city of")


def test_default_model_refuses_answers_that_measure_nothing(default_model):
    from layerscope.errors import LayerscopeError

    with pytest.raises(LayerscopeError, match="same token"):
        activation_patching(default_model, *EIFFEL, " Paris", " Paris", layers=0, progress=False)
    with pytest.raises(LayerscopeError, match="no leading space.*' Paris'"):
        activation_patching(default_model, *EIFFEL, "Paris", " Rome", layers=0, progress=False)
    with pytest.raises(LayerscopeError, match="no leading space.*' Rome'"):
        activation_patching(default_model, *EIFFEL, " Paris", "Rome", layers=0, progress=False)


def test_default_model_rows_carry_decoded_tokens_and_baselines(default_model, capsys):
    from tests.helpers import run_cli

    argv = ["sweep", "--clean", EIFFEL[0], "--corrupt", EIFFEL[1], "--answer", " Paris", "--wrong", " Rome"]
    code, out, _ = run_cli(capsys, *argv, "--layers", "0")
    assert code == 0 and "' of'" in out and "Ġ" not in out  # the readable table's headers
    code, out, _ = run_cli(capsys, *argv, "--layers", "0", "--json")
    rows = json.loads(out)
    assert [r["token"] for r in rows][-3:] == [" the", " city", " of"]
    assert {"clean_value", "corrupt_value", "answer", "wrong"} <= set(rows[0])
    code, _, err = run_cli(capsys, *argv, "--layers", "25:40")
    assert code == 2 and "beyond the model" in err  # as `--layers 30` is, not silently clipped
