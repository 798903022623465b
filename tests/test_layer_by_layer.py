"""Layer by Layer per depth: depth indexing, metrics and probes vs independent HF computations, CLI."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from layerscope.augment import augment_views
from layerscope.layer_by_layer import METRIC_NAMES, best_vs_last, depth_states, probe_layers, representation_metrics
from layerscope.metrics import curvature, dime, effective_rank, infonce, lidar, matrix_entropy, prompt_entropy
from tests.conftest import save_model_dir, tiny
from tests.helpers import hf_hidden_states, run_cli

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


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_representation_metrics_match_independent_states(arch):
    model = tiny(arch)
    table = representation_metrics(
        model, TEXTS, METRIC_NAMES, normalization="max", n_augmentations=3, lidar_limit=5, batch_size=3, progress=False
    )
    assert list(table.columns) == ["depth", "relative_depth", "metric", "value"]
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
    table = probe_layers(model, texts, labels, folds=3, seed=0, batch_size=5, progress=False)
    assert list(table.columns) == ["depth", "relative_depth", "accuracy", "accuracy_std", "n"]
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
    assert set(rows[0]) == {"depth", "metric", "value"}
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
    assert all(set(r) == {"depth", "accuracy", "accuracy_std", "n"} and r["n"] == 12 for r in rows)


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
