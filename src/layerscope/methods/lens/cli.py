"""``lens``: the logit lens at every (layer, position) of one prompt."""

from __future__ import annotations

import argparse

from layerscope.cli.common import emit, load_model, status


def cmd_lens(args: argparse.Namespace) -> None:
    from layerscope.methods.lens.api import logit_lens
    from layerscope.methods.lens.plots import lens_heatmap

    model = load_model(args)
    table = logit_lens(model, args.text, layers=args.layers)
    table = table.drop(columns=["prompt", "rank"])
    readable = table.pivot(index="layer", columns="position", values="top_token").sort_index(ascending=False)
    readable.columns = [
        f"{p}:{t!r}" for p, t in zip(readable.columns, table.drop_duplicates("position")["token"], strict=True)
    ]
    readable = readable.map(lambda t: repr(t)[1:-1])
    readable.index.name = "layer"
    if args.out:
        path = lens_heatmap(table.assign(prompt=0, rank=0), args.out, title=f"Logit lens: {args.text!r}")
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
    p.add_argument("--out", help="write a heatmap PNG here")
