"""``lens``: the logit lens at every (layer, position) of one prompt."""

from __future__ import annotations

import argparse

from layerscope.cli.common import emit, load_model, status
from layerscope.errors import LayerscopeError


def cmd_lens(args: argparse.Namespace) -> None:
    from layerscope.methods.lens.api import logit_lens
    from layerscope.methods.lens.plots import lens_heatmap

    if args.top_k < 1:
        raise LayerscopeError(f"--top-k must be >= 1, got {args.top_k}")
    model = load_model(args)
    lens = None
    if args.lens == "tuned":
        from layerscope.readout.lenses import TunedLens

        lens = TunedLens.cached(model)  # fitted on the shipped corpus once per model, then read from the cache
    table = logit_lens(model, args.text, layers=args.layers, top_k=args.top_k, lens=lens)
    # one prompt: no prompt index; one rank: no rank column (the rows `layerscope explore` offers keep both)
    table = table.drop(columns=["prompt"] + (["rank"] if args.top_k == 1 else []))
    shown = table if args.top_k == 1 else table[table["rank"] == 0]
    readable = shown.pivot(index="layer", columns="position", values="top_token").sort_index(ascending=False)
    readable.columns = [
        f"{p}:{t!r}" for p, t in zip(readable.columns, shown.drop_duplicates("position")["token"], strict=True)
    ]
    readable = readable.map(lambda t: repr(t)[1:-1])
    readable.index.name = "layer"
    if args.out:
        path = lens_heatmap(shown.assign(prompt=0, rank=0), args.out, title=f"Logit lens: {args.text!r}")
        status(f"wrote {path}")
    emit(table, args, readable.to_string())


def register(command) -> None:
    """Add this method's commands through ``command(name, func, help, description)``."""
    p = command(
        "lens",
        cmd_lens,
        "logit lens: the top next token at every (layer, position)",
        "Logit lens: read resid_post[l] of every layer through the final norm and the unembedding.\n"
        "The last layer equals the model's own prediction.\n\n"
        'example:  layerscope lens "The capital of France is" --out lens.png',
    )
    p.add_argument("text", help="the prompt")
    p.add_argument("--layers", default="all", help="layers: all, N, A:B or A,B,C (default: all)")
    p.add_argument("--top-k", type=int, default=1, help="the top K tokens per cell, as rows with a rank (default: 1)")
    p.add_argument(
        "--lens",
        default="logit",
        choices=["logit", "tuned"],
        help="logit lens (default) or the tuned lens (fitted once per model on the shipped corpus, then cached)",
    )
    p.add_argument("--out", help="write a heatmap PNG here")
