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
