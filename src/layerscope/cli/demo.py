"""``layerscope demo``: the main job on the default model, written as an HTML report.

The demo is a list of sections; each method adds its own section function to ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from layerscope.cli.common import emit, load_model, status
from layerscope.report import Report

DEMO_PROMPTS = ["The capital of France is", "The Eiffel Tower is located in the city of"]


def section_logit_lens(model, report: Report, out_dir: Path) -> list[dict]:
    from layerscope.lens import logit_lens
    from layerscope.plotting import lens_heatmap

    rows = []
    report.section(
        "Logit lens",
        "Top next token at every (layer, position), read through the final norm and "
        "unembedding. The last layer is the model's own prediction.",
    )
    for i, prompt in enumerate(DEMO_PROMPTS):
        table = logit_lens(model, prompt)
        path = lens_heatmap(table, out_dir / f"lens_{i}.png", title=f"Logit lens: {prompt!r}")
        report.image(path, prompt)
        last = table[table["position"] == table["position"].max()][["layer", "top_token", "prob"]]
        report.table(last.sort_values("layer", ascending=False).head(12))
        final = last.sort_values("layer").iloc[-1]
        rows.append(
            {
                "section": "logit_lens",
                "prompt": prompt,
                "layer": int(final["layer"]),
                "top_token": final["top_token"],
                "prob": float(final["prob"]),
            }
        )
    return rows


def section_layer_by_layer(model, report: Report, out_dir: Path) -> list[dict]:
    from layerscope.datasets import load_corpus, load_dataset
    from layerscope.layer_by_layer import best_vs_last, probe_layers, representation_metrics
    from layerscope.plotting import metric_curves, probe_curve

    report.section(
        "Layer by Layer",
        "Representation metrics per depth (0 = embeddings, d = output of block d-1, before the final "
        "norm) on 100 corpus lines, max-normalised: prompt entropy, dataset entropy (mean pooling) and "
        "curvature. Then a logistic-regression probe of the sentiment task per depth (5-fold CV): "
        "intermediate depths often beat the last one (Skean et al., ICML 2025).",
    )
    metrics = representation_metrics(
        model, load_corpus()[:100], ["prompt_entropy", "dataset_entropy", "curvature"], progress=False
    )
    report.image(metric_curves(metrics, out_dir / "layer_metrics.png", title=f"Layer by Layer: {model.name}"))
    report.table(metrics.pivot(index="depth", columns="metric", values="value").reset_index())
    sentiment = load_dataset("sentiment")
    probe = probe_layers(model, [r["text"] for r in sentiment], [r["label"] for r in sentiment], progress=False)
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


SECTIONS: list[tuple[str, Callable]] = [
    ("logit lens", section_logit_lens),
    # ("layer by layer", section_layer_by_layer): written and tested on tiny models, but not yet
    # timed on the default model (the probe alone took 1-2 min under load); enable with issue 4.
]


def cmd_demo(args: argparse.Namespace) -> None:
    out_dir = Path(args.out_dir)
    model = load_model(args)
    report = Report(f"layerscope demo: {model.name}")
    info = model.info()
    report.section(
        "Model",
        f"{info.name}: {info.architecture}, {info.n_layers} layers, d_model {info.d_model}, "
        f"vocabulary {info.vocab_size}; source {info.source}",
    )
    rows: list[dict] = []
    for name, section in SECTIONS:
        start = time.perf_counter()
        status(f"demo: {name} ...")
        rows += section(model, report, out_dir)
        status(f"demo: {name} done in {time.perf_counter() - start:.1f}s")
    path = report.write(out_dir / "index.html")
    status(f"report written to {path.resolve()}")
    emit(pd.DataFrame(rows), args)
