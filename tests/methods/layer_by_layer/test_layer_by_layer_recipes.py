"""``recipe="paper"|"authors"`` of Layer by Layer against the authors' formulas written out here.

The authors' ``metric_utils.py`` (as the issue and METHODS.md describe it): HF's ``hidden_states``
as they are (the last one after the final norm); each prompt's tokens centred and L2-normalised;
the Gram matrix clamped to >= 0 before its eigenvalues; curvature as the angle between consecutive
normalised tokens; dataset-level metrics on the mean of the normalised tokens; DiME divided by
``min(log N, log D)``.
"""

import math

import numpy as np
import pytest
import torch

from layerscope.augment import augment_views
from layerscope.errors import LayerscopeError
from layerscope.methods.layer_by_layer import representation_metrics
from layerscope.methods.layer_by_layer.recipes import knobs, parse_ks
from layerscope.metrics import dime, infonce
from tests.conftest import tiny
from tests.methods.layer_by_layer.test_layer_by_layer import TEXTS

pytestmark = pytest.mark.usefixtures("one_thread")


def hf_states(model, texts) -> list[np.ndarray]:
    """Per text ``[L + 1, T_i, D]`` float64: HF ``hidden_states`` of the text alone (last = post-norm)."""
    out = []
    for text in texts:
        enc = model.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model.hf(**enc, output_hidden_states=True).hidden_states
        out.append(torch.stack(hidden)[:, 0].double().numpy())
    return out


def normalise_tokens(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.mean(axis=0, keepdims=True)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def clamped_entropy(Z: np.ndarray) -> float:
    """The authors' entropy: K = Z Z^T clamped to >= 0, p = eigenvalues / trace, / min(log N, log D)."""
    K = np.clip(Z @ Z.T, 0.0, None)
    lam = np.clip(np.linalg.eigvalsh(K), 0.0, None)
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / min(math.log(Z.shape[0]), math.log(Z.shape[1])))


def token_angle_curvature(Z: np.ndarray, k: int = 1) -> float:
    U = normalise_tokens(Z)
    cos = (U[:-k] * U[k:]).sum(axis=1)
    return float(np.arccos(np.clip(cos, -1.0, 1.0)).mean())


def by_metric(table) -> dict[str, np.ndarray]:
    return {m: g.sort_values("depth")["value"].to_numpy() for m, g in table.groupby("metric")}


def test_authors_recipe_matches_the_authors_formulas():
    model = tiny("llama")
    table = representation_metrics(
        model,
        TEXTS,
        ["prompt_entropy", "dataset_entropy", "curvature", "infonce", "dime"],
        recipe="authors",
        curvature_k="1,2",
        batch_size=3,
        progress=False,
    )
    got = by_metric(table)
    states = hf_states(model, TEXTS)
    depths = range(model.n_layers + 1)
    prompt = [np.mean([clamped_entropy(normalise_tokens(s[d])) for s in states]) for d in depths]
    np.testing.assert_allclose(got["prompt_entropy"], prompt, rtol=1e-4, atol=1e-5)
    pooled = [np.stack([normalise_tokens(s[d]).mean(axis=0) for s in states]) for d in depths]
    np.testing.assert_allclose(got["dataset_entropy"], [clamped_entropy(Z) for Z in pooled], rtol=1e-4, atol=1e-5)
    for k, name in ((1, "curvature"), (2, "curvature_k2")):
        expected = [np.mean([token_angle_curvature(s[d], k) for s in states if len(s[d]) > k]) for d in depths]
        np.testing.assert_allclose(got[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)

    views = []
    for texts in augment_views(TEXTS, 2, seed=0):
        per = hf_states(model, texts)
        views.append(torch.tensor(np.stack([[normalise_tokens(s[d]).mean(axis=0) for s in per] for d in depths])))
    N, D = len(TEXTS), model.d_model
    np.testing.assert_allclose(got["infonce"], infonce(*views).numpy(), rtol=1e-4, atol=1e-5)
    raw = dime(*views, seed=0).numpy()
    np.testing.assert_allclose(got["dime"], raw / min(math.log(N), math.log(D)), rtol=1e-4, atol=1e-5)

    row = table.iloc[0]
    assert row["recipe"] == "authors" and row["pooling"] == "normalized-mean" and bool(row["clamp_gram"])
    assert row["curvature"] == "token-angle" and row["curvature_k"] == "1,2"
    assert row["dime_normalization"] == "max" and row["last_depth"] == "post-norm"


def test_paper_recipe_differs_only_where_the_knobs_say():
    model = tiny("llama")
    paper = representation_metrics(model, TEXTS, ["prompt_entropy", "curvature"], progress=False)
    assert set(paper["recipe"]) == {"paper"} and set(paper["curvature"]) == {"trajectory"}
    # the paper's recipe with the authors' knobs set one by one is the authors' recipe
    knobbed = representation_metrics(
        model,
        TEXTS,
        ["prompt_entropy", "curvature"],
        clamp_gram=True,
        curvature="token-angle",
        last_depth="post-norm",
        pooling="normalized-mean",
        dime_normalization="max",
        progress=False,
    )
    authors = representation_metrics(model, TEXTS, ["prompt_entropy", "curvature"], recipe="authors", progress=False)
    np.testing.assert_allclose(knobbed["value"], authors["value"], rtol=1e-12)
    assert set(knobbed["recipe"]) == {"paper"}  # the rows say which knobs were set, not only the recipe


def test_k_step_curvature_trajectory():
    """The paper's variant with steps of k tokens: angle(z_{t+k} - z_t, z_{t+2k} - z_{t+k})."""
    model = tiny("llama")
    table = representation_metrics(model, TEXTS, ["curvature"], curvature_k=[2], progress=False)
    assert set(table["metric"]) == {"curvature_k2"}
    states = hf_states(model, TEXTS)
    expected = []
    for d in range(model.n_layers):  # the last depth is pre-norm in the paper recipe: compare below it
        per = []
        for s in states:
            Z = s[d]
            if len(Z) < 5:
                continue
            v = Z[2:] - Z[:-2]
            a, b = v[:-2], v[2:]
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            defined = norms > 0  # a repeated token (embeddings of "again ... again") has no angle
            cos = (a * b).sum(1)[defined] / norms[defined]
            per.append(np.arccos(np.clip(cos, -1, 1)).mean())
        expected.append(np.mean(per))
    got = table.sort_values("depth")["value"].to_numpy()[: model.n_layers]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_knob_errors():
    assert knobs("authors")["clamp_gram"] is True and knobs()["clamp_gram"] is False
    assert parse_ks("1, 2,5") == (1, 2, 5)
    with pytest.raises(ValueError):
        knobs("codebase")
    with pytest.raises(LayerscopeError):
        parse_ks("0")
    with pytest.raises(LayerscopeError):
        knobs(last_depth="middle")


def test_authors_lidar_reads_normalized_mean_views():
    from layerscope.metrics import lidar

    model = tiny("llama")
    table = representation_metrics(
        model, TEXTS, ["lidar"], recipe="authors", n_augmentations=3, lidar_limit=5, progress=False
    )
    depths = range(model.n_layers + 1)
    views = []
    for texts in augment_views(TEXTS[:5], 3, seed=1):
        per = hf_states(model, texts)
        views.append(torch.tensor(np.stack([[normalise_tokens(s[d]).mean(axis=0) for s in per] for d in depths])))
    expected = lidar(torch.stack(views, dim=2), normalization="max").numpy()  # [L + 1, N, K, D]
    np.testing.assert_allclose(table.sort_values("depth")["value"], expected, rtol=1e-4, atol=1e-5)


def truncated_mean_states(model, texts) -> np.ndarray:
    """``[L + 1, N, D]``: the authors' MTEB embedding per depth l, written out as they load it.

    Their wrapper sets ``config.num_hidden_layers = l`` (only l blocks run) and mean-pools the last
    ``hidden_states`` entry of that model (after its final norm) over the text's tokens.
    """
    config, full = model.hf.config, model.hf.config.num_hidden_layers
    out = []
    try:
        for depth in range(model.n_layers + 1):
            config.num_hidden_layers = depth
            row = []
            for text in texts:
                enc = model.tokenizer(text, return_tensors="pt")
                with torch.no_grad():
                    last = model.hf.model(**enc).last_hidden_state[0]  # [T, D]
                row.append(last.double().mean(dim=0).numpy())
            out.append(np.stack(row))
    finally:
        config.num_hidden_layers = full
    return np.stack(out)


def test_authors_probe_reads_every_depth_through_the_final_norm():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from layerscope.methods.layer_by_layer import pooled_states, probe_layers

    model = tiny("llama")
    texts = [f"{w} item number {i}" for i in range(9) for w in ("good", "bad")]
    labels = ["pos", "neg"] * 9
    reference = truncated_mean_states(model, texts)
    ours = pooled_states(model, texts, "mean", batch_size=4, progress=False, final_norm="every").double().numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    table = probe_layers(model, texts, labels, folds=3, recipe="authors", batch_size=4, progress=False)
    assert set(table["recipe"]) == {"authors"} and set(table["final_norm"]) == {"every"}
    for depth in range(model.n_layers + 1):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        cv = StratifiedKFold(3, shuffle=True, random_state=0)
        want = cross_val_score(clf, reference[depth], np.array(labels), cv=cv, scoring="accuracy").mean()
        assert table.loc[table["depth"] == depth, "accuracy"].item() == pytest.approx(want, abs=1e-9)
    # the paper recipe reads the residual stream: it differs from the authors' at every depth but
    # none, and --final-norm none under the authors' recipe gives it back
    paper = pooled_states(model, texts, "mean", batch_size=4, progress=False).double().numpy()
    assert np.abs(paper - reference).max(axis=(1, 2)).min() > 1e-3
    back = probe_layers(model, texts, labels, folds=3, recipe="authors", final_norm="none", progress=False)
    plain = probe_layers(model, texts, labels, folds=3, progress=False)
    assert back["accuracy"].tolist() == plain["accuracy"].tolist() and set(back["recipe"]) == {"authors"}
    with pytest.raises(LayerscopeError, match="final_norm must be one of none, last, every"):
        probe_layers(model, texts, labels, final_norm="all", progress=False)
