"""``layerscope claims``: each paper's headline claim beside what we measure on the model."""

from __future__ import annotations

import argparse

from layerscope.cli.common import check_device, emit, load_model, remember_model, status
from layerscope.errors import LayerscopeError


def _claims(papers: str | None) -> list:
    from layerscope.methods import claims

    return claims([p.strip() for p in papers.split(",") if p.strip()] if papers else None)


def _progress(claim) -> None:
    status(f"{claim.paper}: {claim.claim} ...")


def claims_rows(model, papers: str | None = None, scale: str = "quick"):
    """The claims table of the registered methods (``papers``: comma-separated method names)."""
    from layerscope.results.claims import claims_table

    return claims_table(model, _claims(papers), scale, progress=_progress)


def cmd_claims(args: argparse.Namespace) -> None:
    columns = ["paper", "claim", "measured", "holds"]
    if args.models is None:
        table = claims_rows(load_model(args), args.methods, args.scale)
        emit(table, args, table[columns].to_string(index=False))
        return
    from layerscope.models.model import load
    from layerscope.results.claims import claims_across

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise LayerscopeError("--models is empty: give model names, comma-separated")
    if args.model is not None:
        raise LayerscopeError("give either --model or --models, not both")
    check_device(args.device)
    claims = _claims(args.methods)

    def load_one(name: str):
        status(f"loading {name} ...")
        model = load(name, device=args.device, dtype=args.dtype, progress=not args.json)
        remember_model(args, model)  # --save's config records it
        return model

    table = claims_across(names, claims, args.scale, progress=_progress, load=load_one)
    emit(table, args, table[["model", *columns]].to_string(index=False))


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command(
        "claims",
        cmd_claims,
        "each paper's headline claim beside what we measure on the model",
        "Runs the measurement behind each headline claim of the four papers (Layer by Layer, Patchscopes,\n"
        "Attend first, Loop as a bridge) through the methods' API and prints the claim, what we measure and\n"
        "whether it holds on this model. --scale quick (default) uses small samples and a layer stride;\n"
        "full, the whole data. --models runs them on several models (an encoder such as minilm-l6 gets\n"
        "only the claims that apply to encoders) and adds, per claim, a row for all the models.\n\n"
        "examples:\n"
        "  layerscope claims --methods attend\n"
        "  layerscope claims --methods layer_by_layer --models smollm2-135m,gemma3-270m,minilm-l6",
    )
    p.add_argument(
        "--methods", help="comma-separated method names, e.g. layer_by_layer,patchscopes,attend (default: all)"
    )
    p.add_argument("--scale", default="quick", choices=["quick", "full"], help="sample sizes (default: quick)")
    p.add_argument(
        "--models",
        help="several models, comma-separated (e.g. smollm2-135m,gemma3-270m,minilm-l6), loaded one at a time; "
        "rows per model, then one 'all models' row per claim measured on more than one",
    )
