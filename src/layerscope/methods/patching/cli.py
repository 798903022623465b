"""``sweep``: activation patching over every (layer, position), as a heatmap and tidy rows."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerscope.cli.common import add_batch_budget, emit, load_model, status
from layerscope.errors import LayerscopeError
from layerscope.methods.patching.names import GROUPINGS, PATCH_SITES
from layerscope.readout.tokens import quoted


def cmd_sweep(args: argparse.Namespace) -> None:
    from layerscope.methods.patching.api import activation_patching
    from layerscope.methods.patching.plots import patching_heatmap

    if args.out and Path(args.out).suffix.lower() != ".png":
        raise LayerscopeError(f"--out must end in .png, got {Path(args.out).name}")
    model = load_model(args)
    table = activation_patching(
        model,
        args.clean,
        args.corrupt,
        args.answer,
        args.wrong,
        site=args.site,
        layers=args.layers,
        grouping=args.grouping,
        batch_budget=args.batch_budget,
        progress=not args.json,
        skip_shared_prefix=not args.run_shared_prefix,
    )
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
    p.add_argument("--clean", required=True, help="the prompt whose states are patched in")
    p.add_argument("--corrupt", required=True, help="the prompt that is run and patched (same number of tokens)")
    p.add_argument("--answer", required=True, help="the clean answer token, e.g. ' Paris'")
    p.add_argument("--wrong", required=True, help="the corrupt answer token, e.g. ' Rome'")
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


