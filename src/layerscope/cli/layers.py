"""``metrics`` and ``probe``: Layer by Layer (Skean et al., ICML 2025) per depth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from layerscope.cli.common import emit, load_model, status
from layerscope.errors import LayerscopeError

PROBE_TASKS = ("sentiment", "topic", "fact_opinion")


def read_texts(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LayerscopeError(f"cannot read {path}: {error.strerror or error}") from None
    return [line.strip() for line in lines if line.strip()]


def load_task(task: str) -> tuple[list[str], list]:
    """A shipped task name or a JSONL file of ``{"text": ..., "label": ...}`` -> (texts, labels)."""
    from layerscope.datasets import load_dataset

    if task in PROBE_TASKS:
        rows = load_dataset(task)
    elif Path(task).is_file():
        rows = []
        for i, line in enumerate(Path(task).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise LayerscopeError(f"{task}:{i}: not JSON ({error.msg})") from None
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise LayerscopeError(f"{task}:{i}: each line needs 'text' and 'label'")
            rows.append(row)
    else:
        raise LayerscopeError(f"unknown task {task!r}: use one of {', '.join(PROBE_TASKS)} or a JSONL file")
    if not rows:
        raise LayerscopeError(f"task {task!r} has no rows")
    return [str(r["text"]) for r in rows], [r["label"] for r in rows]


def cmd_metrics(args: argparse.Namespace) -> None:
    from layerscope.datasets import load_corpus
    from layerscope.layer_by_layer import canonical_metric, representation_metrics
    from layerscope.plotting import metric_curves

    metrics = [canonical_metric(m) for m in args.metrics.split(",") if m.strip()]
    if not metrics:
        raise LayerscopeError("--metrics is empty")
    texts = read_texts(args.texts) if args.texts else load_corpus()
    if args.limit is not None:
        if args.limit < 2:
            raise LayerscopeError(f"--limit must be >= 2, got {args.limit}")
        texts = texts[: args.limit]
    if len(texts) < 2:
        raise LayerscopeError("need at least 2 texts")
    model = load_model(args)
    status(f"metrics {', '.join(metrics)} on {len(texts)} texts ...")
    table = representation_metrics(
        model,
        texts,
        metrics,
        normalization=args.normalization,
        alpha=args.alpha,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.json,
    )
    if args.out:
        status(f"wrote {metric_curves(table, args.out, title=f'Layer by Layer: {model.name}')}")
    readable = table.pivot(index="depth", columns="metric", values="value")[metrics]
    emit(table[["depth", "metric", "value"]], args, readable.to_string(float_format=lambda v: f"{v:.4f}"))


def cmd_probe(args: argparse.Namespace) -> None:
    from layerscope.layer_by_layer import best_vs_last, probe_layers
    from layerscope.plotting import probe_curve

    texts, labels = load_task(args.task)
    model = load_model(args)
    status(f"probing {len(texts)} texts ({len(set(map(str, labels)))} classes) at {model.n_layers + 1} depths ...")
    table = probe_layers(
        model,
        texts,
        labels,
        pooling=args.pooling,
        folds=args.folds,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.json,
    )
    summary = best_vs_last(table)
    status(
        f"best depth {summary['best_depth']}: {summary['best_accuracy']:.3f}; "
        f"last depth {summary['last_depth']}: {summary['last_accuracy']:.3f} (gain {summary['gain']:+.3f})"
    )
    if args.out:
        status(f"wrote {probe_curve(table, args.out, title=f'Probe {args.task} ({model.name})')}")
    readable = table[["depth", "accuracy", "accuracy_std", "n"]].copy()
    readable["best"] = ["<- best" if d == summary["best_depth"] else "" for d in readable["depth"]]
    emit(
        table[["depth", "accuracy", "accuracy_std", "n"]],
        args,
        readable.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
    )


def section_layer_by_layer(model, report, out_dir: Path) -> list[dict]:
    import pandas as pd

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


# Not yet listed: timed on the default model with issue 4 (the probe alone took 1-2 min under load).
DEMO_SECTIONS: list = []


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command(
        "metrics",
        cmd_metrics,
        "Layer by Layer representation metrics (entropy, curvature, invariance) at every depth",
        "Representation-quality metrics of Skean et al. (ICML 2025) at every depth: 0 = embedding output,\n"
        "d = l+1 = output of block l (before the final norm). Prompt entropy and curvature are means\n"
        "over prompts; dataset entropy and effective rank use mean-pooled prompts; InfoNCE and DiME\n"
        "compare two augmented views; LiDAR uses 16 augmentations of the first 64 texts.\n\n"
        "example:  layerscope metrics --limit 200 --metrics prompt-entropy,dataset-entropy --out metrics.png",
    )
    p.add_argument("--texts", help="a text file with one prompt per line (default: the shipped corpus)")
    p.add_argument(
        "--metrics",
        default="prompt-entropy,dataset-entropy,curvature,infonce,lidar,dime",
        help="comma-separated: prompt-entropy, dataset-entropy, curvature, infonce, lidar, dime, effective-rank "
        "(default: all but effective-rank)",
    )
    p.add_argument(
        "--normalization",
        default="max",
        choices=["raw", "n", "d", "nd", "max"],
        help="entropy normaliser: raw, /log N, /log D, /(log N log D), /min(log N, log D) (default: max)",
    )
    p.add_argument("--alpha", type=float, default=1.0, help="Renyi order of the entropies (default: 1)")
    p.add_argument("--limit", type=int, help="use only the first N texts")
    p.add_argument("--seed", type=int, default=0, help="augmentation / permutation seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    p.add_argument("--out", help="write a PNG of every metric vs depth here")

    p = command(
        "probe",
        cmd_probe,
        "linear-probe accuracy of a classification task at every depth",
        "Embed every text at every depth (mean or last-token pooling), then score a standardised\n"
        "logistic regression by stratified k-fold cross-validation per depth. The best depth is marked;\n"
        "Layer by Layer finds it is often not the last one.\n\n"
        "example:  layerscope probe --task sentiment --out probe.png",
    )
    p.add_argument(
        "--task", required=True, help="sentiment, topic, fact_opinion, or a JSONL file with 'text' and 'label'"
    )
    p.add_argument("--pooling", default="mean", choices=["mean", "last"], help="token pooling (default: mean)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    p.add_argument("--out", help="write a PNG of accuracy vs depth here")
