"""``layerscope claims``: each paper's headline claim beside what we measure on the model."""

from __future__ import annotations

import argparse

from layerscope.cli.common import emit, load_model, status


def claims_rows(model, papers: str | None = None, scale: str = "quick"):
    """The claims table of the registered methods (``papers``: comma-separated method names)."""
    from layerscope.methods import claims
    from layerscope.results.claims import claims_table

    names = [p.strip() for p in papers.split(",") if p.strip()] if papers else None
    return claims_table(model, claims(names), scale, progress=lambda c: status(f"{c.paper}: {c.claim} ..."))


def cmd_claims(args: argparse.Namespace) -> None:
    model = load_model(args)
    table = claims_rows(model, args.methods, args.scale)
    readable = table[["paper", "claim", "measured", "holds"]].to_string(index=False)
    emit(table, args, readable)


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command(
        "claims",
        cmd_claims,
        "each paper's headline claim beside what we measure on the model",
        "Runs the measurement behind each headline claim of the four papers (Layer by Layer, Patchscopes,\n"
        "Attend first, Loop as a bridge) through the methods' API and prints the claim, what we measure and\n"
        "whether it holds on this model. --scale quick (default) uses small samples and a layer stride;\n"
        "full, the whole data.\n\n"
        "example:  layerscope claims --methods attend",
    )
    p.add_argument(
        "--methods", help="comma-separated method names, e.g. layer_by_layer,patchscopes,attend (default: all)"
    )
    p.add_argument("--scale", default="quick", choices=["quick", "full"], help="sample sizes (default: quick)")
