"""``layerscope eval describe``: entity description per layer (the Patchscopes paper's section 4.3)."""

from __future__ import annotations

import argparse
import time

from layerscope.cli.common import (
    add_action,
    add_batch_budget,
    add_distributed,
    add_resume,
    distributed_options,
    emit,
    load_model,
    options,
    status,
)


def run(args: argparse.Namespace) -> None:
    from layerscope.methods.patchscopes.cli import _positive_int, _save_items
    from layerscope.methods.patchscopes.describe import eval_describe
    from layerscope.methods.patchscopes.plots import layer_curves

    limit = None if args.limit == "all" else _positive_int(args.limit, "--limit")
    model = load_model(args)
    start = time.perf_counter()
    result = eval_describe(
        model,
        limit=limit,
        **options(args, "layers", "max_new_tokens", "seed", "resume", "restart", "batch_budget"),
        **distributed_options(args),
    )
    status(f"entity description done in {time.perf_counter() - start:.1f}s")
    per_layer = result["layers"]
    if args.out:
        curve = per_layer.assign(method="patchscope")
        status(f"wrote {layer_curves(curve, args.out, value='rouge_l', title=f'Entity description: {model.name}')}")
    _save_items(result["items"], args.save_items)
    emit(per_layer, args, per_layer.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def add(sub, func) -> None:
    """Register ``eval describe`` (dispatched through ``func``)."""
    q = add_action(
        sub,
        "describe",
        func,
        "entity description per layer, scored with ROUGE-L",
        "Each shipped entity name's last-token state at layer l is patched into the paper's few-shot\n"
        "description prompt (l* = l); the generated description (up to the next few-shot item) is scored\n"
        "against the shipped reference with ROUGE-L F1 (rouge-score, stemmed).\n\n"
        "example:  layerscope eval describe --limit 20 --layers ::3 --out rouge.png",
    )
    q.add_argument("--limit", default="20", help="entities (seeded sample), or 'all' (default: 20)")
    q.add_argument("--layers", default="::3", help="layers (default: every 3rd, '::3')")
    q.add_argument("--max-new-tokens", type=int, default=30, help="tokens generated (default: 30; paper: 50)")
    q.add_argument("--seed", type=int, default=0, help="entity sampling seed (default: 0)")
    add_resume(q, "finished entities (in units of 5) are skipped")
    add_distributed(q, "entities (units of 5)")
    q.add_argument("--out", help="write a PNG of ROUGE-L vs layer here")
    q.add_argument(
        "--save-items", metavar="FILE", help="write every generated description here (.csv, .json or .parquet)"
    )
    add_batch_budget(q)
