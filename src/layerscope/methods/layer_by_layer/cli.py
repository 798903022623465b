"""``metrics`` and ``probe``: Layer by Layer (Skean et al., ICML 2025) per depth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from layerscope.cli.common import add_batch_budget, add_distributed, add_resume, emit, load_model, read_texts, status
from layerscope.errors import LayerscopeError

PROBE_TASKS = ("sentiment", "topic", "fact_opinion")


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


def parse_models(text: str | None) -> list[str] | None:
    """``"a,b,c"`` -> ``["a", "b", "c"]`` (None stays None)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise LayerscopeError("--models is empty: give comma-separated names, e.g. smollm2-135m,gemma3-270m,minilm-l6")
    return names


def _distributed(args: argparse.Namespace) -> dict:
    """``--workers`` / ``--ray`` for ``--models`` runs (each worker loads the models it is given)."""
    from layerscope.cli.common import distributed_options

    options = distributed_options(args)
    if options and not getattr(args, "models", None):
        raise LayerscopeError("--workers and --ray go with --models (one model is one unit)")
    return options


def _load_options(args: argparse.Namespace) -> dict:
    from layerscope.cli.common import placement

    return {"device": args.device, "dtype": args.dtype, "progress": not args.json, **placement(args)}


def _checkpoint(args: argparse.Namespace, config: dict):
    from layerscope.results.io import Checkpoint

    return Checkpoint(args.resume, config=config, restart=args.restart) if args.resume else None


def _batching(args: argparse.Namespace) -> dict:
    from layerscope.engine.chunking import parse_budget

    if args.batch_size is not None and args.batch_size < 1:
        raise LayerscopeError(f"--batch-size must be >= 1, got {args.batch_size}")
    parse_budget(args.batch_budget)  # a bad budget fails before the model loads
    return {"batch_size": args.batch_size, "batch_budget": args.batch_budget}


def cmd_metrics(args: argparse.Namespace) -> None:
    from layerscope.datasets import load_corpus
    from layerscope.methods.layer_by_layer import canonical_metric, compare_models, representation_metrics
    from layerscope.methods.layer_by_layer.plots import metric_curves, metric_curves_by_model

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
    models = parse_models(args.models)
    _distributed(args)  # --workers without --models: refused before anything loads
    if models is not None and args.model is not None:
        raise LayerscopeError("give either --model or --models, not both")
    options = {
        "normalization": args.normalization,
        "alpha": args.alpha,
        "seed": args.seed,
        "lidar_limit": args.lidar_limit,
        "min_tokens": args.min_tokens,
        **_batching(args),
        **_recipe(args),
    }
    if models is None:
        model = load_model(args)
        status(f"metrics {', '.join(metrics)} on {len(texts)} texts ...")
        table = representation_metrics(model, texts, metrics, progress=not args.json, **options)
        if args.out:
            status(f"wrote {metric_curves(table, args.out, title=f'Layer by Layer: {model.name}')}")
        readable = table.pivot(index="depth", columns="metric", values="value")[list(dict.fromkeys(table["metric"]))]
        emit(table, args, readable.to_string(float_format=lambda v: f"{v:.4f}"))
        return
    status(f"metrics {', '.join(metrics)} on {len(texts)} texts for {', '.join(models)} ...")
    config = {"command": "metrics", "models": models, "metrics": metrics, "texts": texts, **options}
    table = compare_models(
        models,
        texts,
        metrics,
        checkpoint=_checkpoint(args, config),
        load_options=_load_options(args),
        progress=not args.json,
        **_distributed(args),
        **options,
    )
    if args.out:
        status(f"wrote {metric_curves_by_model(table, args.out, title='Layer by Layer: ' + ', '.join(models))}")
    readable = table.pivot_table(index="relative_depth", columns=["metric", "model"], values="value")
    emit(table, args, readable.to_string(float_format=lambda v: f"{v:.4f}"))


def _recipe(args: argparse.Namespace) -> dict:
    """``--recipe`` and the knobs set on their own (None = the recipe's value)."""
    from layerscope.methods.layer_by_layer.recipes import parse_ks

    return {
        "recipe": args.recipe,
        "pooling": args.pooling,
        "clamp_gram": args.clamp_gram,
        "curvature": args.curvature,
        "curvature_k": parse_ks(args.curvature_k),
        "dime_normalization": args.dime_normalization,
        "last_depth": args.last_depth,
    }


def _add_recipe(p: argparse.ArgumentParser) -> None:
    from layerscope.methods.layer_by_layer.recipes import CURVATURES, LAST_DEPTHS

    p.add_argument(
        "--recipe",
        default="paper",
        choices=["paper", "authors"],
        help="paper: the paper's text (default); authors: the authors' metric_utils.py (normalized-mean "
        "pooling, clamped Gram, token-angle curvature, max-normalised DiME, post-norm last depth). Each "
        "knob below overrides the recipe; the rows record the recipe and every knob",
    )
    p.add_argument(
        "--pooling",
        choices=["mean", "normalized-mean", "last"],
        help="pooling of dataset-level metrics (paper: mean; authors: normalized-mean)",
    )
    p.add_argument(
        "--clamp-gram",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="clamp the entropies' Gram matrices to >= 0 (paper: no; authors: yes)",
    )
    p.add_argument(
        "--curvature",
        choices=CURVATURES,
        help="trajectory: angle between consecutive steps (paper); token-angle: between consecutive "
        "centred, normalised tokens (authors)",
    )
    p.add_argument("--curvature-k", help="k-step curvature, comma-separated, e.g. 1,2,5 (default: 1)")
    p.add_argument(
        "--dime-normalization",
        choices=["raw", "n", "d", "nd", "max"],
        help="DiME normaliser (paper: raw; authors: max)",
    )
    p.add_argument(
        "--last-depth",
        choices=LAST_DEPTHS,
        help="the last depth: pre-norm resid_post[L-1] (paper) or HF's post-norm hidden state (authors)",
    )


def cmd_probe(args: argparse.Namespace) -> None:
    from layerscope.methods.layer_by_layer import best_vs_last, compare_probes, probe_layers, probe_summary
    from layerscope.methods.layer_by_layer.plots import probe_curve, probe_curves_by_model

    task_names = [t.strip() for t in args.task.split(",") if t.strip()]
    if not task_names:
        raise LayerscopeError("--task is empty")
    tasks = {name: load_task(name) for name in task_names}
    models = parse_models(args.models)
    if models is not None and args.model is not None:
        raise LayerscopeError("give either --model or --models, not both")
    options = {"pooling": args.pooling, "folds": args.folds, "seed": args.seed, **_batching(args)}
    options |= {"recipe": args.recipe, "final_norm": args.final_norm}
    if models is None and len(tasks) == 1:
        texts, labels = tasks[task_names[0]]
        model = load_model(args)
        status(f"probing {len(texts)} texts ({len(set(map(str, labels)))} classes) at {model.n_layers + 1} depths ...")
        table = probe_layers(model, texts, labels, progress=not args.json, **options)
        summary = best_vs_last(table)
        status(
            f"best depth {summary['best_depth']}: {summary['best_accuracy']:.3f}; "
            f"last depth {summary['last_depth']}: {summary['last_accuracy']:.3f} (gain {summary['gain']:+.3f})"
        )
        if args.out:
            status(f"wrote {probe_curve(table, args.out, title=f'Probe {args.task} ({model.name})')}")
        readable = table[["depth", "accuracy", "accuracy_std", "n"]].copy()
        readable["best"] = ["<- best" if d == summary["best_depth"] else "" for d in readable["depth"]]
        emit(table, args, readable.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return
    distributed = _distributed(args)
    if models is None:
        models = [load_model(args)]
    config = {"command": "probe", "models": [m if isinstance(m, str) else m.name for m in models], **options}
    config["tasks"] = {name: [list(t), [str(v) for v in y]] for name, (t, y) in tasks.items()}
    table = compare_probes(
        models,
        tasks,
        checkpoint=_checkpoint(args, config),
        load_options=_load_options(args),
        progress=not args.json,
        **distributed,
        **options,
    )
    summary = probe_summary(table)
    for row in summary.itertuples():
        status(
            f"{row.model} / {row.task}: best depth {row.best_depth} ({row.best_relative_depth:.2f}): "
            f"{row.best_accuracy:.3f}; last depth {row.last_depth}: {row.last_accuracy:.3f} (gain {row.gain:+.3f})"
        )
    if args.out:
        status(f"wrote {probe_curves_by_model(table, args.out)}")
    emit(table, args, summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _add_batching(p: argparse.ArgumentParser) -> None:
    from layerscope.methods.layer_by_layer.defaults import DEFAULT_BATCH_SIZE

    add_batch_budget(p, "chunks are as large as fit, longest prompts first")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"at most this many prompts per forward chunk (default: {DEFAULT_BATCH_SIZE})",
    )


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
        "examples:\n"
        "  layerscope metrics --limit 200 --metrics prompt-entropy,dataset-entropy --out metrics.png\n"
        "  layerscope metrics --models smollm2-135m,gemma3-270m,minilm-l6 --limit 200 --out models.png",
    )
    p.add_argument("--texts", help="a text file with one prompt per line (default: the shipped corpus)")
    p.add_argument(
        "--metrics",
        default="prompt-entropy,dataset-entropy,curvature,infonce,lidar,dime",
        help="comma-separated: prompt-entropy, dataset-entropy, curvature, infonce, infonce-cosine, lidar, dime, "
        "effective-rank (default: prompt-entropy, dataset-entropy, curvature, infonce, lidar, dime). infonce uses "
        "dot products as the paper does (huge on decoders, whose states have huge norms); infonce-cosine is "
        "SimCLR's cosine form",
    )
    p.add_argument(
        "--normalization",
        default="max",
        choices=["raw", "n", "d", "nd", "max"],
        help="entropy normaliser: raw, /log N, /log D, /(log N log D), /min(log N, log D) (default: max)",
    )
    p.add_argument("--alpha", type=float, default=1.0, help="Renyi order of the entropies (default: 1)")
    p.add_argument("--limit", type=int, help="use only the first N texts")
    p.add_argument(
        "--min-tokens",
        type=int,
        default=0,
        help="drop texts with fewer tokens (each model's tokenizer), after --limit: the paper's length filter "
        "(30 on WikiText; the shipped corpus lines have 16-33 SmolLM2 tokens) (default: 0, keep all)",
    )
    p.add_argument("--seed", type=int, default=0, help="augmentation / permutation seed (default: 0)")
    p.add_argument(
        "--lidar-limit", type=int, default=64, help="LiDAR uses the first N texts x 16 augmentations (default: 64)"
    )
    p.add_argument(
        "--models",
        help="several models side by side, comma-separated (e.g. smollm2-135m,gemma3-270m,minilm-l6): "
        "rows gain 'model' and 'relative_depth', the plot has one curve per model",
    )
    _add_recipe(p)
    _add_batching(p)
    add_resume(p, "with --models, finished models are skipped")
    add_distributed(p, "models")
    p.add_argument("--out", help="write a PNG of every metric vs depth (vs relative depth with --models) here")

    p = command(
        "probe",
        cmd_probe,
        "linear-probe accuracy of a classification task at every depth",
        "Embed every text at every depth (mean or last-token pooling), then score a standardised\n"
        "logistic regression by stratified k-fold cross-validation per depth. The best depth is marked;\n"
        "Layer by Layer finds it is often not the last one.\n\n"
        "examples:\n"
        "  layerscope probe --task sentiment --out probe.png\n"
        "  layerscope probe --task sentiment,topic --models smollm2-135m,minilm-l6 --out probes.png",
    )
    p.add_argument(
        "--task",
        required=True,
        help="sentiment, topic, fact_opinion, or a JSONL file with 'text' and 'label'; several comma-separated",
    )
    p.add_argument("--pooling", default="mean", choices=["mean", "last"], help="token pooling (default: mean)")
    p.add_argument(
        "--recipe",
        default="paper",
        choices=["paper", "authors"],
        help="paper: the paper's text (default); authors: the authors' MTEB wrapper, which reads every depth "
        "through the final norm (their pooling is the paper's mean). The knob below overrides it; rows "
        "record the recipe, pooling and final norm",
    )
    p.add_argument(
        "--final-norm",
        choices=["none", "last", "every"],
        help="depths read through the final norm: none (paper), last (HF's hidden states) or every (authors)",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default: 0)")
    p.add_argument("--models", help="several models, comma-separated: one curve per model and task")
    _add_batching(p)
    add_resume(p, "finished (model, task) pairs are skipped")
    add_distributed(p, "(model, task) units")
    p.add_argument("--out", help="write a PNG of accuracy vs depth here")
