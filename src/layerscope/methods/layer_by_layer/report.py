"""The demo's section on Layer by Layer: metric curves and a sentiment probe per depth."""

from __future__ import annotations

from pathlib import Path

DEMO_TEXTS = 48
"""Corpus lines for the demo's metric curves (the cheap metrics only: one forward pass each)."""
DEMO_PROBE_PER_CLASS = 80
"""Sentiment examples per class for the demo's probe."""


def section_layer_by_layer(model, report, out_dir: Path) -> list[dict]:
    import pandas as pd

    from layerscope.datasets import load_corpus, load_dataset
    from layerscope.methods.layer_by_layer import best_vs_last, probe_layers, representation_metrics
    from layerscope.methods.layer_by_layer.plots import metric_curves, probe_curve

    report.section(
        "Layer by Layer",
        f"Representation metrics per depth (0 = embeddings, d = output of block d-1, before the final "
        f"norm) on {DEMO_TEXTS} corpus lines, max-normalised: prompt entropy, dataset entropy (mean pooling) "
        f"and curvature. Then a logistic-regression probe per depth (5-fold CV) on {2 * DEMO_PROBE_PER_CLASS} "
        "examples of the sentiment task: intermediate depths often beat the last one (Skean et al., ICML "
        "2025). The invariance metrics (InfoNCE, LiDAR, DiME) and other models: `layerscope metrics --models`.",
    )
    metrics = representation_metrics(
        model, load_corpus()[:DEMO_TEXTS], ["prompt_entropy", "dataset_entropy", "curvature"], progress=False
    )
    report.image(metric_curves(metrics, out_dir / "layer_metrics.png", title=f"Layer by Layer: {model.name}"))
    report.table(metrics.pivot(index="depth", columns="metric", values="value").reset_index())
    sentiment = load_dataset("sentiment")
    chosen = [r for r in sentiment if r["label"] == "positive"][:DEMO_PROBE_PER_CLASS] + [
        r for r in sentiment if r["label"] == "negative"
    ][:DEMO_PROBE_PER_CLASS]
    probe = probe_layers(model, [r["text"] for r in chosen], [r["label"] for r in chosen], progress=False)
    report.image(probe_curve(probe, out_dir / "probe_sentiment.png", title=f"Sentiment probe: {model.name}"))
    summary = best_vs_last(probe)
    report.table(pd.DataFrame([summary]))
    rows = [
        {
            "section": "layer_by_layer",
            "metric": name,
            "depth": int(group.loc[group["value"].idxmin(), "depth"]),
            "value": float(group["value"].min()),
            "note": "minimum over depth",
        }
        for name, group in metrics.groupby("metric", sort=False)
    ]
    rows.append(
        {
            "section": "layer_by_layer",
            "metric": "sentiment_probe_accuracy",
            "depth": summary["best_depth"],
            "value": summary["best_accuracy"],
            "note": f"best depth; last depth {summary['last_depth']}: {summary['last_accuracy']:.3f}",
        }
    )
    return rows


DEMO_SECTIONS = [("layer by layer", section_layer_by_layer)]
