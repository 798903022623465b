"""``sweep``: activation patching over every (layer, position), as a heatmap and tidy rows."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerscope.cli.common import add_batch_budget, add_distributed, add_resume, emit, load_model, status
from layerscope.errors import LayerscopeError
from layerscope.methods.patching.names import GROUPINGS, PATCH_SITES
from layerscope.readout.tokens import quoted


def cmd_sweep(args: argparse.Namespace) -> None:
    from layerscope.methods.patching.plots import patching_heatmap

    if args.out and Path(args.out).suffix.lower() != ".png":
        raise LayerscopeError(f"--out must end in .png, got {Path(args.out).name}")
    if args.method == "exact" and (args.steps or args.compare):
        raise LayerscopeError("--steps and --compare go with --method attribution")
    single = [args.clean, args.corrupt, args.answer, args.wrong]
    if args.pairs is not None:
        if any(v is not None for v in single) or args.method != "exact":
            raise LayerscopeError("--pairs replaces --clean/--corrupt/--answer/--wrong (and runs exact patching)")
        _pairs(args)
        return
    if any(v is None for v in single):
        raise LayerscopeError("give --clean, --corrupt, --answer and --wrong (one pair), or --pairs FILE (many)")
    if args.workers is not None or args.ray is not None:
        raise LayerscopeError("--workers and --ray go with --pairs (one pair is one unit)")
    if args.resume and args.method != "exact":
        raise LayerscopeError("--resume goes with exact patching (attribution takes one backward pass)")
    model = load_model(args)
    if args.method == "attribution":
        _attribution(model, args)
        return
    table = _single_grid(model, args)
    clean, corrupt = table["clean_value"].iloc[0], table["corrupt_value"].iloc[0]
    status(
        f"logit({args.answer!r}) - logit({args.wrong!r}): clean {clean:.3f}, "
        f"corrupt {corrupt:.3f}; {int(table['skipped'].sum())} of {len(table)} cells were no-op patches "
        "in the shared prefix"
    )
    if args.out:
        title = f"Patching {args.site}: clean -> corrupt, logit({args.answer!r}) - logit({args.wrong!r})"
        status(f"wrote {patching_heatmap(table, args.out, title=title)}")
    readable = table.pivot(index="layer", columns="position", values="value").sort_index(ascending=False)
    tokens = table.drop_duplicates("position").sort_values("position")["token"].tolist()
    readable.columns = [f"{p}:{quoted(t)}" for p, t in zip(readable.columns, tokens, strict=True)]
    emit(table, args, readable.to_string(float_format=lambda v: f"{v:.2f}"))


def _single_grid(model, args: argparse.Namespace):
    """One pair's grid; with ``--resume`` the finished grid is read back instead of run again."""
    import pandas as pd

    from layerscope.methods.patching.api import activation_patching
    from layerscope.results.io import Checkpoint

    checkpoint = None
    if args.resume:
        config = {"command": "sweep", "model": model.name, "clean": args.clean, "corrupt": args.corrupt,
                  "answer": args.answer, "wrong": args.wrong, "site": args.site, "layers": args.layers}  # fmt: skip
        checkpoint = Checkpoint(args.resume, config, restart=args.restart)
        if checkpoint.done("grid"):
            status(f"resumed from {args.resume}: the grid is already there")
            return pd.DataFrame(checkpoint.rows_of("grid"))
    table = activation_patching(
        model, args.clean, args.corrupt, args.answer, args.wrong, site=args.site, layers=args.layers,
        grouping=args.grouping, batch_budget=args.batch_budget, progress=not args.json,
        skip_shared_prefix=not args.run_shared_prefix,
    )  # fmt: skip
    if checkpoint is not None:
        checkpoint.add("grid", table.to_dict(orient="records"))
    return table


def _pairs(args: argparse.Namespace) -> None:
    """``sweep --pairs FILE``: every pair's grid and the mean normalised grid, resumable, distributable."""
    from layerscope.cli.common import distributed_options
    from layerscope.methods.patching.pairs import load_pairs, pair_sweep
    from layerscope.results.io import Checkpoint

    pairs = load_pairs(None if args.pairs == "shipped" else args.pairs)
    distributed = distributed_options(args)
    model = load_model(args)
    config = {"command": "sweep --pairs", "pairs": args.pairs, "model": model.name, "site": args.site,
              "layers": args.layers, "n_pairs": len(pairs)}  # fmt: skip
    checkpoint = Checkpoint(args.resume, config, restart=args.restart) if args.resume else None
    table = pair_sweep(
        model, pairs, site=args.site, layers=args.layers, batch_budget=args.batch_budget, checkpoint=checkpoint,
        progress=not args.json, **distributed,
    )  # fmt: skip
    skipped = int(table["pairs_skipped"].iloc[0])
    mean = table[(table["aggregate"] == "mean") & (table["relation"] == "all")]
    status(
        f"{len(pairs) - skipped} pairs patched ({skipped} skipped: the tokenizer splits them differently); "
        "the mean grid is (value - corrupt) / (clean - corrupt) per pair, 0 = corrupt, 1 = clean"
    )
    readable = mean.pivot(index="layer", columns="position_from_end", values="normalized").sort_index(ascending=False)
    emit(table, args, readable.to_string(float_format=lambda v: f"{v:.2f}"))


def _attribution(model, args: argparse.Namespace) -> None:
    """``sweep --method attribution``: the linear estimate, optionally beside the exact grid."""
    from layerscope.methods.patching.attribution import attribution_patching, compare_with_exact
    from layerscope.methods.patching.plots import patching_heatmap

    pair = (args.clean, args.corrupt, args.answer, args.wrong)
    options = dict(sites=args.site, layers=args.layers, steps=args.steps or None)
    if args.compare:
        table, agreement = compare_with_exact(
            model, *pair, **options, batch_budget=args.batch_budget, progress=not args.json
        )
        for row in agreement.itertuples():
            status(
                f"{row.site}: Pearson r = {row.pearson:.3f} with exact patching over {row.cells} cells; largest "
                f"disagreement {row.max_abs_error:.3f} at layer {row.worst_layer}, position {row.worst_position} "
                f"({row.worst_token!r})"
            )
    else:
        table = attribution_patching(model, *pair, **options)
    estimator = table["estimator"].iloc[0].replace("_", " ")
    if args.out:
        title = f"{estimator} of {args.site}: logit({args.answer!r}) - logit({args.wrong!r})"
        status(f"wrote {patching_heatmap(table, args.out, title=title)}")
    readable = table.pivot(index="layer", columns="position", values="value").sort_index(ascending=False)
    emit(
        table,
        args,
        f"{estimator} (estimated metric after each patch)\n" + readable.to_string(float_format=lambda v: f"{v:.2f}"),
    )


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command(
        "sweep",
        cmd_sweep,
        "activation patching: patch the clean state at every (layer, position) into the corrupt run",
        "Activation-patching sweep. For every layer l and position p, the clean prompt's state at SITE[l],\n"
        "position p, is written into the corrupt prompt's run; the value is logit(ANSWER) - logit(WRONG) at the\n"
        "last position. Both prompts must have the same number of tokens; ANSWER and WRONG must be one token\n"
        "each (mind the leading space). Each cell computes only what its patch can change: it starts at its\n"
        "layer (one staggered batch), reuses the corrupt run's KV cache before its position, and cells in the\n"
        "prompts' common first tokens take the corrupt value without a forward pass; chunked to --batch-budget.\n\n"
        'example:  layerscope sweep --clean "The Eiffel Tower is located in the city of" \\\n'
        '              --corrupt "The Colosseum is located in the city of" --answer " Paris" --wrong " Rome" \\\n'
        "              --out patching.png",
    )
    p.add_argument("--clean", help="the prompt whose states are patched in")
    p.add_argument("--corrupt", help="the prompt that is run and patched (same number of tokens)")
    p.add_argument("--answer", help="the clean answer token, e.g. ' Paris'")
    p.add_argument("--wrong", help="the corrupt answer token, e.g. ' Rome'")
    p.add_argument("--site", default="resid_post", choices=PATCH_SITES, help="where to patch (default: resid_post)")
    p.add_argument("--layers", default="all", help="layers: all, N, A:B or A,B,C (default: all)")
    p.add_argument("--out", help="write the heatmap PNG here")
    add_batch_budget(p, "for the sweep: the held states plus one batched forward chunk")
    p.add_argument(
        "--grouping",
        default="auto",
        choices=GROUPINGS,
        help="how positions share a KV prefix (auto: cheapest split; position: one prefix per position; "
        "layer: no prefix reuse; none: no reuse at all). Results do not depend on it",
    )
    p.add_argument(
        "--run-shared-prefix",
        action="store_true",
        help="also run the cells in the prompts' common first tokens (they are no-op patches; by default they "
        "take the corrupt run's value without a forward pass)",
    )
    p.add_argument(
        "--pairs",
        metavar="FILE",
        help="dataset-level patching: a JSON-lines file of {clean, corrupt, answer, wrong} pairs ('shipped': the "
        "135 shipped pairs); prints the mean grid normalised by each pair's baselines, --json gives every cell",
    )
    add_resume(p, "the finished grid (with --pairs: every finished pair) is not run again")
    add_distributed(p, "pairs")
    p.add_argument(
        "--method",
        default="exact",
        choices=("exact", "attribution"),
        help="exact: patch every cell (default); attribution: the linear estimate of every cell from one "
        "backward pass (attribution patching), much faster, approximate",
    )
    p.add_argument("--steps", type=int, help="with --method attribution: integrated gradients over N path points")
    p.add_argument(
        "--compare",
        action="store_true",
        help="with --method attribution: also run exact patching on the same grid "
        "and report the correlation and the largest disagreement",
    )
