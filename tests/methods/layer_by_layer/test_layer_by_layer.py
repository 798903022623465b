"""Layer by Layer per depth: depth indexing, metrics and probes vs independent HF computations, CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from layerscope.augment import augment_views
from layerscope.errors import LayerscopeError
from layerscope.methods.layer_by_layer import (
    METRIC_NAMES,
    best_vs_last,
    depth_states,
    probe_layers,
    representation_metrics,
)
from layerscope.metrics import curvature, dime, effective_rank, infonce, lidar, matrix_entropy, prompt_entropy
from layerscope.testing import tiny_model
from tests.conftest import save_model_dir, tiny
from tests.helpers import hf_hidden_states, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread

TEXTS = [
    "the capital of france is paris",
    "hello world",
    "a quick brown fox jumps over the lazy dog again and again",
    "one two three four",
    "layer by layer we read the model",
    "short one",
    "the sky is blue today",
]


def reference_states(model, texts) -> list[torch.Tensor]:
    """Per text ``[L + 1, T_i, D]`` (its real tokens): HF ``hidden_states`` of one padded forward, the
    last replaced by the engine's pre-norm capture of the last block (HF's last is after the final norm)."""
    texts = list(texts)
    enc = model.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = torch.stack(model.hf(**enc, output_hidden_states=True).hidden_states)  # [L + 1, B, T, D]
    last = model.n_layers - 1
    result = model.run(texts, capture=("resid_post", [last]), logits=None)
    out = []
    for i in range(len(texts)):
        real = enc.attention_mask[i].bool()
        states = hidden[:, i, real]
        states[-1] = result.get("resid_post", last)[i, result.batch.attention_mask[i].bool()]
        out.append(states)
    return out


def reference_pooled(model, texts) -> torch.Tensor:
    return torch.stack([s.mean(dim=1) for s in reference_states(model, texts)], dim=1)  # [L + 1, N, D]


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_depth_indexing(arch):
    model = tiny(arch)
    states, mask = depth_states(model, ["the capital of france is"], progress=False)
    hidden = hf_hidden_states(model, "the capital of france is")
    assert states.shape[0] == model.n_layers + 1 and bool(mask.all())
    torch.testing.assert_close(states[0], hidden[0], rtol=1e-5, atol=1e-6)  # embedding output
    checked = model.n_layers if arch == "bert" else model.n_layers - 1  # decoders: HF's last is post-norm
    for layer in range(checked):
        torch.testing.assert_close(states[layer + 1], hidden[layer + 1], rtol=1e-5, atol=1e-6)


def test_depth_states_padding_across_batches():
    model = tiny("llama")
    states, mask = depth_states(model, TEXTS, batch_size=3, progress=False)
    for i, ref in enumerate(reference_states(model, TEXTS)):
        n = int(mask[i].sum())
        assert n == ref.shape[1] and bool(mask[i, -n:].all())  # left padding
        torch.testing.assert_close(states[:, i, -n:], ref, rtol=1e-4, atol=1e-5)


def cosine_nt_xent(view_a: torch.Tensor, view_b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's loss by hand, per depth: ``[L, N, D]`` x 2 -> ``[L]``."""
    losses = []
    for a, b in zip(view_a.double(), view_b.double(), strict=True):
        z = torch.nn.functional.normalize(torch.cat([a, b]), dim=-1)
        n = len(a)
        total = 0.0
        for i in range(2 * n):
            sims = [float(z[i] @ z[j]) / temperature for j in range(2 * n) if j != i]
            positive = float(z[i] @ z[(i + n) % (2 * n)]) / temperature
            total += -positive + math.log(sum(math.exp(s) for s in sims))
        losses.append(total / (2 * n))
    return torch.tensor(losses)


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_representation_metrics_match_independent_states(arch):
    model = tiny(arch)
    table = representation_metrics(
        model, TEXTS, METRIC_NAMES, normalization="max", n_augmentations=3, lidar_limit=5, batch_size=3, progress=False
    )
    assert list(table.columns)[:6] == ["model", "method", "depth", "relative_depth", "metric", "value"]
    assert set(table["recipe"]) == {"paper"} and set(table["pooling"]) == {"mean"}
    assert len(table) == len(METRIC_NAMES) * (model.n_layers + 1)
    got = {m: torch.tensor(g.sort_values("depth")["value"].to_numpy()) for m, g in table.groupby("metric")}

    per_text = reference_states(model, TEXTS)  # each [L + 1, T_i, D], no padding
    expected = {
        # per prompt, then the mean over the prompts where it is defined (2-token prompts have no curvature)
        "prompt_entropy": torch.cat(
            [prompt_entropy(s[:, None], normalization="max", reduction="none") for s in per_text], dim=1
        ).nanmean(1),
        "curvature": torch.cat([curvature(s[:, None], reduction="none") for s in per_text], dim=1).nanmean(1),
    }
    Z = torch.stack([s.mean(dim=1) for s in per_text], dim=1)
    expected["dataset_entropy"] = matrix_entropy(Z, normalization="max")
    expected["effective_rank"] = effective_rank(Z)
    view_a, view_b = (reference_pooled(model, v) for v in augment_views(TEXTS, 2, seed=0))
    expected["infonce"] = infonce(view_a, view_b)
    expected["infonce_cosine"] = cosine_nt_xent(view_a, view_b)
    expected["dime"] = dime(view_a, view_b, seed=0)
    views = augment_views(TEXTS[:5], 3, seed=1)
    V = torch.stack([reference_pooled(model, v) for v in views], dim=2)  # [L + 1, N, K, D]
    expected["lidar"] = lidar(V, normalization="max")
    for name in METRIC_NAMES:
        torch.testing.assert_close(got[name], expected[name].double(), rtol=1e-3, atol=1e-4, msg=name)
    assert table["relative_depth"].max() == 1.0


def test_probe_matches_independent_sklearn():
    model = tiny("llama")
    texts = [f"{w} item number {i}" for i in range(12) for w in ("good", "bad")]
    labels = ["pos", "neg"] * 12
    with pytest.raises(LayerscopeError, match="folds must be an int >= 2"):  # not "every class needs ..."
        probe_layers(model, texts, labels, folds=1, progress=False)
    table = probe_layers(model, texts, labels, folds=3, seed=0, batch_size=5, progress=False)
    assert list(table.columns) == [
        "model",
        "method",
        "depth",
        "relative_depth",
        "accuracy",
        "accuracy_std",
        "n",
        "chance",
        "recipe",
        "pooling",
        "final_norm",
    ]
    assert set(table["recipe"]) == {"paper"} and set(table["final_norm"]) == {"none"}
    Z = reference_pooled(model, texts).double().numpy()
    for depth in range(model.n_layers + 1):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        scores = cross_val_score(
            clf, Z[depth], np.array(labels), cv=StratifiedKFold(3, shuffle=True, random_state=0), scoring="accuracy"
        )
        row = table[table["depth"] == depth].iloc[0]
        assert row["accuracy"] == pytest.approx(scores.mean(), abs=1e-9)
        assert row["accuracy_std"] == pytest.approx(scores.std(), abs=1e-9) and row["n"] == len(texts)
    summary = best_vs_last(table)
    assert summary["last_depth"] == model.n_layers
    assert summary["best_accuracy"] == table["accuracy"].max() >= summary["last_accuracy"]


# ---- CLI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["llama", "bert"])
def model_dir(request, tmp_path_factory):
    return save_model_dir(request.param, tmp_path_factory.mktemp(f"tiny-{request.param}"))


def test_metrics_cli_json(capsys, model_dir, tmp_path):
    png = tmp_path / "m.png"
    code, out, _ = run_cli(
        capsys,
        "metrics",
        "--model",
        model_dir,
        "--limit",
        "6",
        "--metrics",
        "prompt-entropy,dataset-entropy,curvature,infonce,dime,effective-rank",
        "--json",
        "--out",
        str(png),
    )
    rows = json.loads(out)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    knobs = {"recipe", "pooling", "clamp_gram", "curvature", "curvature_k", "dime_normalization", "last_depth",
             "min_tokens", "n_texts"}  # fmt: skip
    assert set(rows[0]) == {"model", "method", "depth", "relative_depth", "metric", "value", *knobs}
    assert rows[0]["n_texts"] == 6 and rows[0]["min_tokens"] == 0
    assert {r["metric"] for r in rows} == {
        "prompt_entropy",
        "dataset_entropy",
        "curvature",
        "infonce",
        "dime",
        "effective_rank",
    }
    assert len(rows) == 6 * (tiny("llama").n_layers + 1)


def test_metrics_cli_readable(capsys, model_dir, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(TEXTS))
    code, out, _ = run_cli(capsys, "metrics", "--model", model_dir, "--texts", str(texts), "--metrics", "curvature")
    assert code == 0 and "curvature" in out and "depth" in out


def test_probe_cli_json(capsys, model_dir, tmp_path):
    task = tmp_path / "task.jsonl"
    task.write_text("\n".join(json.dumps({"text": f"{w} thing {i}", "label": w}) for i in range(6) for w in "ab"))
    png = tmp_path / "p.png"
    code, out, err = run_cli(
        capsys, "probe", "--model", model_dir, "--task", str(task), "--folds", "3", "--json", "--out", str(png)
    )
    rows = json.loads(out)
    assert code == 0 and png.exists() and "best depth" in err
    assert [r["depth"] for r in rows] == list(range(tiny("llama").n_layers + 1))
    assert all(
        set(r) == {"model", "method", "depth", "relative_depth", "accuracy", "accuracy_std", "n", "chance"}
        | {"recipe", "pooling", "final_norm"}
        and r["n"] == 12
        and (r["recipe"], r["final_norm"]) == ("paper", "none")
        for r in rows
    )


def test_probe_cli_shipped_task_readable(capsys, model_dir):
    if "bert" in model_dir:
        pytest.skip("one architecture is enough for the shipped task")
    code, out, _ = run_cli(capsys, "probe", "--model", model_dir, "--task", "sentiment", "--pooling", "last")
    assert code == 0 and "<- best" in out


def test_unknown_metric_is_a_one_line_error(capsys, model_dir):
    code, out, err = run_cli(capsys, "metrics", "--model", model_dir, "--metrics", "entropy")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "unknown metric 'entropy'" in err and "prompt-entropy" in err and "lidar" in err


def test_unknown_task_lists_tasks(capsys, model_dir):
    code, out, err = run_cli(capsys, "probe", "--model", model_dir, "--task", "nope")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert all(t in err for t in ("sentiment", "topic", "fact_opinion"))


# ---- chunking by memory budget -----------------------------------------------------------------


def test_plan_chunks_longest_first_within_budget_and_cap():
    from layerscope.engine.chunking import row_bytes
    from layerscope.methods.layer_by_layer import plan_chunks, token_lengths

    model = tiny("llama")
    lengths = token_lengths(model, TEXTS)
    assert lengths == [len(model.tokenizer(t)["input_ids"]) for t in TEXTS]
    per_row = row_bytes(model, max(lengths), captured_states=model.n_layers + 1)
    budget = 2 * per_row + 1  # room for two rows of the longest text
    plan = plan_chunks(model, TEXTS, batch_size=None, batch_budget=budget)
    assert sorted(i for chunk in plan for i in chunk) == list(range(len(TEXTS)))  # each text once
    flat = [i for chunk in plan for i in chunk]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for chunk in plan:
        assert len(chunk) * row_bytes(model, lengths[chunk[0]], captured_states=model.n_layers + 1) <= budget
    assert len(plan[0]) == 2
    assert all(len(c) <= 3 for c in plan_chunks(model, TEXTS, batch_size=3, batch_budget=None))
    assert plan_chunks(model, TEXTS, batch_size=None, batch_budget=None) == [flat]  # no limit: one chunk
    assert all(len(c) == 1 for c in plan_chunks(model, TEXTS, batch_size=None, batch_budget=1))  # at least 1 row
    with pytest.raises(LayerscopeError, match="budget"):
        plan_chunks(model, TEXTS, batch_budget="lots")


def test_pooled_states_keep_text_order_whatever_the_chunking():
    from layerscope.methods.layer_by_layer import pooled_states

    model = tiny("llama")
    expected = reference_pooled(model, TEXTS).float()
    for batch_size, budget in [(None, None), (2, None), (None, 1), (3, "1GB")]:
        got = pooled_states(model, TEXTS, batch_size=batch_size, batch_budget=budget, progress=False)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_drop_dims_zeroes_those_dimensions_everywhere():
    from layerscope.methods.layer_by_layer import pooled_states

    model = tiny("llama")
    got = pooled_states(model, TEXTS, drop_dims=[3, 0, 3], progress=False)
    expected = reference_pooled(model, TEXTS).float()
    expected[..., [0, 3]] = 0.0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    table = representation_metrics(model, TEXTS, ["dataset_entropy"], drop_dims=[0, 3], progress=False)
    want = matrix_entropy(expected.double(), normalization="max")
    np.testing.assert_allclose(table.sort_values("depth")["value"], want.numpy(), rtol=1e-4)
    with pytest.raises(LayerscopeError, match="out of range"):
        pooled_states(model, TEXTS, drop_dims=[model.d_model], progress=False)


# ---- several models side by side ---------------------------------------------------------------


def two_models():
    """A 4-layer decoder and a 2-layer encoder: different depths, so relative depth matters."""
    return [tiny("llama"), tiny_model("bert", n_layers=2)]


def test_compare_models_is_each_model_alone_on_a_relative_depth_axis(tmp_path):
    from layerscope.methods.layer_by_layer import compare_models
    from layerscope.results.io import Checkpoint

    models = two_models()
    metrics = ["prompt_entropy", "dataset_entropy", "infonce"]
    ckpt = Checkpoint(tmp_path / "c.jsonl", config={"x": 1})
    table = compare_models(models, TEXTS, metrics, checkpoint=ckpt, batch_size=3, progress=False)
    assert list(table.columns) == ["model", "method", "depth", "relative_depth", "metric", "value"]
    for model in models:
        rows = table[table["model"] == model.name]
        assert len(rows) == len(metrics) * (model.n_layers + 1)
        assert sorted(set(rows["relative_depth"])) == [d / model.n_layers for d in range(model.n_layers + 1)]
        alone = representation_metrics(model, TEXTS, metrics, progress=False)
        np.testing.assert_allclose(rows["value"].to_numpy(), alone["value"].to_numpy(), rtol=1e-6)
    # resumed: nothing is recomputed (the models are not even run)
    again = compare_models(
        [m.name for m in models], TEXTS, metrics, checkpoint=Checkpoint(tmp_path / "c.jsonl", {"x": 1}), progress=False
    )
    pd.testing.assert_frame_equal(again, table)


def test_compare_models_rejects_duplicates_and_bad_metrics_before_loading():
    from layerscope.methods.layer_by_layer import compare_models

    with pytest.raises(LayerscopeError, match="twice"):
        compare_models([tiny("llama"), tiny("llama")], TEXTS, ["curvature"])
    with pytest.raises(LayerscopeError, match="unknown metric"):
        compare_models(["no-such-model"], TEXTS, ["entropy"])
    with pytest.raises(LayerscopeError, match="no model"):
        compare_models([], TEXTS)


def test_compare_probes_and_summary():
    from layerscope.methods.layer_by_layer import compare_probes, probe_summary

    models = two_models()
    texts = [f"{w} item number {i}" for i in range(9) for w in ("good", "bad")]
    tasks = {"a": (texts, ["pos", "neg"] * 9), "b": (texts, ["x"] * 9 + ["y"] * 9)}
    table = compare_probes(models, tasks, folds=3, progress=False)
    assert list(table.columns) == [
        "model",
        "method",
        "task",
        "depth",
        "relative_depth",
        "accuracy",
        "accuracy_std",
        "n",
        "chance",
        "recipe",
        "pooling",
        "final_norm",
    ]
    assert set(table["chance"]) == {0.5}  # both tasks are balanced: half the texts in each class
    for model in models:
        for task, (t, y) in tasks.items():
            rows = table[(table["model"] == model.name) & (table["task"] == task)].reset_index(drop=True)
            alone = probe_layers(model, t, y, folds=3, progress=False)
            np.testing.assert_allclose(rows["accuracy"], alone["accuracy"])
    summary = probe_summary(table)
    assert len(summary) == 4 and set(summary.columns) >= {"model", "task", "best_depth", "last_accuracy", "gain"}
    for row in summary.itertuples():
        group = table[(table["model"] == row.model) & (table["task"] == row.task)]
        assert row.best_accuracy == group["accuracy"].max()
        assert row.last_depth == group["depth"].max() and row.gain >= 0
        assert row.best_relative_depth == pytest.approx(row.best_depth / row.last_depth)


def test_top_dimensions_match_numpy():
    from layerscope.methods.layer_by_layer import top_dimensions

    model = tiny("llama")
    table = top_dimensions(model, TEXTS, top=2, batch_size=3, progress=False)
    z = np.concatenate([s.double().numpy() for s in reference_states(model, TEXTS)], axis=1)  # [L + 1, tokens, D]
    for depth in range(model.n_layers + 1):
        mean_abs = np.abs(z[depth]).mean(axis=0)
        order = np.argsort(-mean_abs)[:2]
        rows = table[table["depth"] == depth].sort_values("rank")
        assert rows["dim"].tolist() == order.tolist()
        np.testing.assert_allclose(rows["mean_abs"], mean_abs[order], rtol=1e-4)
        np.testing.assert_allclose(rows["max_abs"], np.abs(z[depth]).max(axis=0)[order], rtol=1e-4)
        np.testing.assert_allclose(rows["ratio"], mean_abs[order] / np.median(mean_abs), rtol=1e-4)
        share = (z[depth] ** 2 / (z[depth] ** 2).sum(axis=1, keepdims=True)).mean(axis=0)
        np.testing.assert_allclose(rows["norm_share"], share[order], rtol=1e-4)


def test_checkpoint_rows_of():
    from layerscope.results.io import Checkpoint

    ckpt = Checkpoint(None)
    ckpt.add(["m", "t"], [{"a": 1}])
    assert ckpt.rows_of(["m", "t"]) == [{"a": 1}]
    with pytest.raises(KeyError):
        ckpt.rows_of("missing")


# ---- CLI with several models -------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_model_dirs(tmp_path_factory):
    dirs = []
    for model in two_models():
        folder = tmp_path_factory.mktemp(model.name)
        model.hf.save_pretrained(folder, safe_serialization=True)
        model.tokenizer.save_pretrained(folder)
        dirs.append(str(folder))
    return dirs


def test_metrics_cli_several_models(capsys, two_model_dirs, tmp_path):
    png, saved, resume = tmp_path / "m.png", tmp_path / "m.csv", tmp_path / "r.jsonl"
    argv = ["metrics", "--models", ",".join(two_model_dirs), "--limit", "5", "--metrics", "prompt-entropy,dime"]
    argv += ["--batch-budget", "64KB", "--json", "--out", str(png), "--save", str(saved), "--resume", str(resume)]
    code, out, _ = run_cli(capsys, *argv)
    rows = json.loads(out)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG" and saved.exists() and resume.exists()
    assert set(rows[0]) == {"model", "method", "depth", "relative_depth", "metric", "value"}
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], set()).add(r["relative_depth"])
    assert len(by_model) == 2 and all(min(v) == 0.0 and max(v) == 1.0 for v in by_model.values())
    assert sorted(len(v) for v in by_model.values()) == [3, 5]  # 2 and 4 layers
    code, again, _ = run_cli(capsys, *argv)  # resumed from the checkpoint
    assert code == 0 and json.loads(again) == rows


def test_probe_cli_several_models_and_tasks(capsys, two_model_dirs, tmp_path):
    task = tmp_path / "task.jsonl"
    task.write_text("\n".join(json.dumps({"text": f"{w} thing {i}", "label": w}) for i in range(6) for w in "ab"))
    png = tmp_path / "p.png"
    argv = ["probe", "--models", ",".join(two_model_dirs), "--task", f"{task},{task}", "--folds", "2"]
    code, out, err = run_cli(capsys, *argv, "--json", "--out", str(png))
    rows = json.loads(out)
    assert code == 0 and png.exists() and err.count("best depth") == 2  # the same task twice is one task
    assert set(rows[0]) == {
        "model",
        "method",
        "task",
        "depth",
        "relative_depth",
        "accuracy",
        "accuracy_std",
        "n",
        "chance",
        "recipe",
        "pooling",
        "final_norm",
    }
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "best_depth" in out and "gain" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-budget", "lots"], "budget"),
        (["--batch-size", "0"], "--batch-size"),
        (["--models", " , "], "--models is empty"),
    ],
)
def test_batching_and_models_errors_are_one_line(capsys, two_model_dirs, extra, message):
    for command in (["metrics", "--limit", "3"], ["probe", "--task", "sentiment"]):
        argv = command + (extra if "--models" in extra else ["--model", two_model_dirs[0], *extra])
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_model_and_models_together_is_an_error(capsys, two_model_dirs):
    code, _, err = run_cli(capsys, "metrics", "--model", two_model_dirs[0], "--models", two_model_dirs[1])
    assert code == 2 and "either --model or --models" in err


def test_demo_section_is_listed_and_runs(tmp_path):
    from layerscope.cli import demo
    from layerscope.methods.layer_by_layer import report as layers
    from layerscope.results.report import Report

    assert ("layer by layer", layers.section_layer_by_layer) in demo.sections()
    report = Report("t")
    rows = layers.section_layer_by_layer(tiny("llama"), report, tmp_path)
    assert (tmp_path / "layer_metrics.png").exists() and (tmp_path / "probe_sentiment.png").exists()
    assert {r["metric"] for r in rows} == {"prompt_entropy", "dataset_entropy", "curvature", "sentiment_probe_accuracy"}
    probe = rows[-1]
    assert 0.0 <= probe["value"] <= 1.0 and 0 <= probe["depth"] <= tiny("llama").n_layers
    assert any("Layer by Layer" in part for part in report.parts)


def test_model_plots_accept_partial_tables(tmp_path):
    from layerscope.methods.layer_by_layer.plots import metric_curves_by_model, probe_curves_by_model

    metrics = pd.DataFrame(
        [{"model": "a", "relative_depth": d / 2, "metric": "prompt_entropy", "value": 0.5} for d in range(3)]
        + [{"model": "b", "relative_depth": d / 4, "metric": "lidar", "value": 0.1} for d in range(5)]
    )
    assert metric_curves_by_model(metrics, tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    probes = pd.DataFrame(
        [{"model": "a", "task": "t", "relative_depth": d / 2, "accuracy": 0.5 + d / 10} for d in range(3)]
        + [{"model": "b", "task": "u", "relative_depth": d / 4, "accuracy": 0.6} for d in range(5)]
    )
    assert probe_curves_by_model(probes, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_min_tokens_drops_short_texts_before_every_metric():
    """The paper's length filter: the same numbers as the long texts given alone, and the rows say so."""
    from layerscope.methods.layer_by_layer import representation_metrics

    model = tiny_model("llama")
    texts = ["hello", "the cat and the dog", "one two three four five six", "a b", "the capital of france is paris"]
    lengths = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    cut = sorted(lengths)[2]  # keeps the three longest (or more on ties)
    long = [t for t, n in zip(texts, lengths, strict=True) if n >= cut]
    metrics = ["prompt-entropy", "dataset-entropy", "curvature"]
    filtered = representation_metrics(model, texts, metrics, min_tokens=cut, progress=False)
    by_hand = representation_metrics(model, long, metrics, progress=False)
    assert np.allclose(filtered["value"], by_hand["value"], atol=1e-9)
    assert (filtered["n_texts"] == len(long)).all() and (filtered["min_tokens"] == cut).all()
    with pytest.raises(LayerscopeError, match=r"only 0 of 5 texts have >= 99 tokens \(the longest has"):
        representation_metrics(model, texts, metrics, min_tokens=99, progress=False)
