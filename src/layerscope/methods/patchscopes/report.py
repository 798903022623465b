"""The demo's section on Patchscopes: entity description, next-token prediction per layer."""

from __future__ import annotations

from pathlib import Path

from layerscope.results.report import shorten

#: a name the 135M default model knows (its early/middle layers describe it; "Alexander the Great" it does not)
DEMO_ENTITY = "Albert Einstein"
#: corpus lines for the demo's own tuned lens when the full one (``layerscope eval next-token``) is not cached
DEMO_LENS_TEXTS = 80


def demo_lens(model):
    """The tuned lens for the demo: the full one (fitted on the corpus's fit split, as
    ``layerscope eval next-token`` uses) when it is cached, else a cheap one fitted on the first
    :data:`DEMO_LENS_TEXTS` lines of that split (cached too; ~17 s of one CPU core for the default model,
    the full fit ~37 s). Returns ``(lens, a note saying which)``."""
    from layerscope.datasets import corpus_split
    from layerscope.methods.patchscopes import TunedLens

    fit_texts = corpus_split()[0]
    full = TunedLens.cache_path(model, fit_texts)
    lens = TunedLens.load(full, model) if full.is_file() else TunedLens.cached(model, fit_texts[:DEMO_LENS_TEXTS])
    meta = lens.metadata
    return lens, f"least squares with bias on {meta.get('n_positions')} positions of {meta.get('n_texts')} corpus lines"


def section_patchscopes(model, report, out_dir: Path) -> list[dict]:
    from layerscope.datasets import corpus_split
    from layerscope.methods.patchscopes import entity_description
    from layerscope.methods.patchscopes.evaluate import eval_next_token
    from layerscope.methods.patchscopes.plots import layer_curves

    report.section(
        "Patchscopes",
        f"Entity description: the last-token state of {DEMO_ENTITY!r} at each layer is patched into the "
        "paper's few-shot description prompt (l* = l) and the model continues it (greedy, KV cache, patch on "
        "the prompt pass only). Then next-token prediction from each layer's state: the token-identity "
        "Patchscope vs the logit lens vs a least-squares tuned lens, Precision@1 against the model's own "
        "final prediction on held-out corpus positions (all three are 1.0 at the last layer by construction).",
    )
    layers = f"::{max(1, model.n_layers // 6)}"
    described = entity_description(model, DEMO_ENTITY, layers, max_new_tokens=16)
    report.table(described.assign(text=[shorten(t, 90) for t in described["text"]])[["source_layer", "text"]])
    lens, lens_note = demo_lens(model)
    table = eval_next_token(model, corpus_split()[1][:24], positions=2, layers="all", tuned_lens=lens, seed=0)
    report.image(
        layer_curves(table, out_dir / "patchscope_next_token.png", title=f"Next-token prediction: {model.name}"),
        f"Precision@1 on {int(table['n'].iloc[0])} held-out positions (24 corpus lines x 2); tuned lens: {lens_note}",
    )
    wide = table.pivot(index="layer", columns="method", values="precision_at_1").reset_index()
    report.table(wide)
    rows = [
        {"section": "patchscopes", "metric": "description", "layer": int(r.source_layer), "value": r.text}
        for r in described.itertuples()
    ]
    for method, group in table.groupby("method"):
        mid = group[group["layer"] == model.n_layers // 2]
        rows.append(
            {
                "section": "patchscopes",
                "metric": f"precision_at_1_{method}",
                "layer": int(mid["layer"].iloc[0]),
                "value": float(mid["precision_at_1"].iloc[0]),
            }
        )
    return rows


DEMO_SECTIONS = [("patchscopes", section_patchscopes)]
