"""The claims table's rows against the underlying method calls, on a tiny model."""

import pytest

import layerscope.methods.attend as attend
from layerscope.datasets import corpus_split, load_corpus
from layerscope.methods import claims
from layerscope.methods.layer_by_layer import best_vs_last, probe_layers, representation_metrics
from layerscope.methods.layer_by_layer.claims import PROBE_TASKS, probe_texts
from layerscope.methods.patchscopes.evaluate import eval_next_token
from layerscope.results.claims import ALL_MODELS, claims_across, claims_table
from tests.conftest import tiny
from tests.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def row_of(table, paper: str, start: str):
    rows = table[(table["paper"] == paper) & table["claim"].str.startswith(start)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_layer_by_layer_claims_equal_the_method_calls():
    model = tiny("llama")
    table = claims_table(model, claims(["layer_by_layer"]))
    assert list(table.columns)[:2] == ["model", "method"] and set(table["method"]) == {"claims"}
    check_layer_by_layer_rows(model, table)


def check_layer_by_layer_rows(model, table) -> None:
    """Each Layer-by-Layer row of ``model`` in ``table`` against the probe / entropy calls made here."""
    table = table[table["model"] == model.name]
    for task in PROBE_TASKS:
        texts, labels = probe_texts("quick", task=task)
        assert len(set(labels)) >= 2 and len(texts) == 20 * len(set(labels))
        summary = best_vs_last(probe_layers(model, texts, labels, folds=3, progress=False))
        rows = table[table["claim"].str.startswith("an intermediate layer") & table["claim"].str.endswith(task)]
        assert len(rows) == 1
        row = rows.iloc[0]
        assert row["value"] == pytest.approx(summary["gain"]) and task in row["measured"]
        assert row["holds"] == (summary["best_depth"] != summary["last_depth"] and summary["gain"] > 0)
    values = representation_metrics(model, load_corpus()[:16], ["prompt_entropy"], progress=False)
    values = values.sort_values("depth")["value"].to_numpy()
    drop = 1 - values[1:-1].min() / min(values[0], values[-1])
    row = row_of(table, "Layer by Layer", "decoders show")
    valley = drop >= 0.05
    assert row["value"] == pytest.approx(drop) and row["holds"] == (valley if model.kind == "causal" else not valley)
    assert ("encoder" in row["measured"]) == (model.kind == "encoder")


def test_claims_across_a_decoder_and_an_encoder():
    """--models: per-model rows equal the method calls; the encoder gets only the claims for encoders;
    the 'all models' rows hold when every model's row does."""
    decoder, encoder = tiny("llama"), tiny("bert")
    assert encoder.kind == "encoder"
    table = claims_across([decoder, encoder], claims(["layer_by_layer", "attend"]))
    assert list(table.columns)[:2] == ["model", "method"]
    for model in (decoder, encoder):
        check_layer_by_layer_rows(model, table)
    assert set(table.loc[table["paper"] == "Attend first", "model"]) == {decoder.name}  # no next token on an encoder
    summary = table[table["model"] == ALL_MODELS]
    assert len(summary) == len(PROBE_TASKS) + 1 and set(summary["paper"]) == {"Layer by Layer"}
    for row in summary.itertuples():
        per_model = table[(table["claim"] == row.claim) & (table["model"] != ALL_MODELS)]
        assert len(per_model) == 2 and row.holds == bool(per_model["holds"].all())
        assert row.value == pytest.approx(per_model["holds"].mean())
    with pytest.raises(ValueError, match="no model given"):
        claims_across([], claims(["layer_by_layer"]))


def test_attend_and_patchscopes_claims_equal_the_method_calls():
    model = tiny("llama")
    table = claims_table(model, [c for c in claims(["attend", "patchscopes"]) if "probe" not in c.claim])
    L = model.n_layers
    sweep = attend.sweep_task(
        model, attend.task_items("capitals", limit=8), ["random"], f"0:{L}:3", match="first-token", progress=False
    )
    layer = attend.stable_from(sweep)["random"]
    row = row_of(table, "Attend first", "manipulating")
    assert row["value"] == pytest.approx(0.0 if layer is None else 1 - layer / L)
    ex = attend.SWITCH_EXAMPLE
    switched = attend.switch(
        model, ex["prompt"], ex["position"], ex["source"], ex["source_position"], list(ex["answers"]), f"0:{L}:3"
    )
    layer = attend.ignored_from(switched)
    row = row_of(table, "Attend first", "the switch")
    assert row["value"] == pytest.approx(0.0 if layer is None else 1 - layer / L)
    assert row["holds"] == (layer is not None and 1 - layer / L >= 1 / 3)
    nt = eval_next_token(model, corpus_split()[1][:8], ["patchscope", "logit_lens"], 4, layers=[L // 2])
    upper = nt.groupby("method")["precision_at_1"].mean()
    row = row_of(table, "Patchscopes", "token identity")
    assert row["value"] == pytest.approx(upper["patchscope"] - upper["logit_lens"])


def test_claims_cli(capsys, tmp_path):
    from tests.conftest import save_model_dir

    folder = save_model_dir("llama", tmp_path)
    code, out, err = run_cli(capsys, "claims", "--model", folder, "--methods", "layer_by_layer")
    assert code == 0 and "an intermediate layer beats the last" in out and "measured" in out


def test_loops_claims_equal_the_method_calls():
    from layerscope.methods.loops import load_oracle_task, self_verification, verification_summary

    model = tiny("llama")
    table = claims_table(model, claims(["loops"]))
    L = model.n_layers
    task = load_oracle_task("arithmetic", model, n=24)
    rows = self_verification(model, task, loops=(1, 2), probe_layers=sorted({L // 2, L - 1}), folds=3, progress=False)
    summary = verification_summary(rows).sort_values("loops")
    tp, sv, rr = (summary[c].max() for c in ("P_TP", "P_SV", "sup_P_RR"))
    row = row_of(table, "Loop as a bridge", "sup P_TP")
    assert row["holds"] == (tp <= sv <= rr) and row["value"] == pytest.approx(rr - tp)
    gaps = (summary["sup_P_RR"] - summary["P_SV"]).tolist()
    row = row_of(table, "Loop as a bridge", "more loops")
    assert row["value"] == pytest.approx(gaps[-1] - gaps[0]) and row["holds"] == (gaps[-1] < gaps[0])
