"""``patchscope`` and ``eval``: Patchscopes (Ghandeharioun et al., ICML 2024) and their evaluations."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from layerscope.cli.common import (
    add_action,
    add_batch_budget,
    add_distributed,
    add_resume,
    distributed_options,
    emit,
    load_model,
    options,
    placement,
    read_texts,
    remember_model,
    status,
)
from layerscope.errors import LayerscopeError
from layerscope.methods.patchscopes import cli_describe as describe_cli
from layerscope.methods.patchscopes import cli_multihop as multihop_cli

TARGET_PRESETS = ("identity", "describe")


def parse_position(text: str):
    """``"-1"`` / ``"3"`` -> int; ``"last"``/``"all"`` stay keywords; anything else is a substring."""
    return int(text) if re.fullmatch(r"-?\d+", text.strip()) else text


def parse_target(text: str) -> str:
    from layerscope.methods.patchscopes import DESCRIBE_PROMPT, IDENTITY_PROMPT

    return {"identity": IDENTITY_PROMPT, "describe": DESCRIBE_PROMPT}.get(text, text)


def _save_items(table, path: str | None) -> None:
    """``--save-items FILE``: every generated item (the rows of the summary are ``--save``'s)."""
    if path:
        from layerscope.results.io import save_table
        from layerscope.results.save import check_target

        status(f"wrote {save_table(table, check_target(path))}")


def cmd_patchscope(args: argparse.Namespace) -> None:
    from layerscope.methods.patchscopes import patchscope

    model = load_model(args)
    target_model, mapping = model, None
    target_layers = args.target_layers
    if args.target_model:
        target_model, mapping, target_layers = _cross_model(args, model)
    target = parse_target(args.target)
    start = time.perf_counter()
    table = patchscope(
        model,
        args.source,
        parse_position(args.position),
        target,
        args.source_layers,
        target_layers,
        None if args.target_position is None else parse_position(args.target_position),
        target_model=target_model,
        mapping=mapping,
        max_new_tokens=args.max_new_tokens,
        batch_budget=args.batch_budget,
        progress=not args.json,
        recipe=args.recipe,
        source_last=args.source_last,
    )
    status(f"{len(table)} patched runs in {time.perf_counter() - start:.1f}s")
    if args.out:
        from layerscope.methods.patchscopes.plots import token_grid

        status(f"wrote {token_grid(table, args.out, title=f'Patchscope of {args.source!r}')}")
    from layerscope.results.report import shorten

    readable = table.assign(
        top_token=[shorten(t, 14) for t in table["top_token"]], text=[shorten(t) for t in table["text"]]
    )
    columns = ["source_layer", "target_layer", "top_token", "prob", "text"]
    if table["source_position"].nunique() > 1:
        columns = ["source_position", "source_token", *columns]
    emit(table, args, readable[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _cross_model(args: argparse.Namespace, model):
    """Load the target model and fit affine maps for the requested (l, l*) pairs on shared text."""
    from layerscope.datasets import corpus_split
    from layerscope.methods.patchscopes.core import layer_pairs
    from layerscope.models.model import load
    from layerscope.readout.maps import fit_cross_model

    if args.target_layers == "same":
        raise LayerscopeError("with --target-model, give --target-layers explicitly (e.g. '0,6,12' or 'all')")
    target_model = load(args.target_model, device=args.device, dtype=args.dtype, progress=not args.json,
                        **placement(args))  # fmt: skip
    remember_model(args, target_model)  # its hash goes into --save's config too
    pairs = layer_pairs(args.source_layers, args.target_layers, model.n_layers, target_model.n_layers)
    texts = corpus_split()[0][: args.map_texts]
    status(f"fitting {len(pairs)} affine maps {model.name} -> {target_model.name} on {len(texts)} corpus lines ...")
    maps = fit_cross_model(model, target_model, pairs, texts, batch_budget=args.batch_budget)
    return target_model, maps, args.target_layers


def cmd_eval(args: argparse.Namespace) -> None:
    {
        "next-token": _eval_next_token,
        "attributes": _eval_attributes,
        "describe": describe_cli.run,
        "multihop": multihop_cli.run,
    }[args.action](args)


def _eval_next_token(args: argparse.Namespace) -> None:
    from layerscope.methods.patchscopes.evaluate import canonical_method, eval_next_token
    from layerscope.methods.patchscopes.plots import layer_curves
    from layerscope.readout.lenses import TunedLens

    methods = [canonical_method(m) for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise LayerscopeError("--methods is empty: use patchscope,logit-lens,tuned-lens")
    positions = "all" if args.positions == "all" else _positive_int(args.positions, "--positions")
    from layerscope.datasets import corpus_split

    # --limit applies to the default texts too (the held-out corpus lines), not only to --texts
    texts = read_texts(args.texts) if args.texts else corpus_split()[1]
    if args.limit is not None:
        texts = texts[: _positive_int(str(args.limit), "--limit")]
    model = load_model(args)
    lens = None
    if "tuned_lens" in methods:
        start = time.perf_counter()
        if args.tuned_lens and Path(args.tuned_lens).is_file():
            lens = TunedLens.load(args.tuned_lens, model)
            status(f"tuned lens loaded from {args.tuned_lens}")
        else:
            lens = TunedLens.cached(model, batch_budget=args.batch_budget, progress=not args.json)
            how = (
                "loaded from the cache"
                if lens.from_cache
                else f"fitted on {lens.metadata.get('n_positions')} positions"
            )
            status(f"tuned lens {how} ({lens.path}) in {time.perf_counter() - start:.1f}s")
            if args.tuned_lens:
                status(f"saved the tuned lens to {lens.save(args.tuned_lens)}")
    start = time.perf_counter()
    table = eval_next_token(
        model,
        texts,
        methods,
        positions,
        layers=args.layers,
        tuned_lens=lens,
        seed=args.seed,
        batch_budget=args.batch_budget,
        progress=not args.json,
        recipe=args.recipe,
        resume=args.resume,
        restart=args.restart,
        **distributed_options(args),
    )
    status(
        f"evaluated {int(table['n'].iloc[0])} positions x {table['layer'].nunique()} layers in "
        f"{time.perf_counter() - start:.1f}s"
    )
    last = table[table["layer"] == model.n_layers - 1]
    if len(last) and (last["precision_at_1"] < 1.0).any():
        status("warning: a method is below 1.0 at the last layer, which is impossible by construction (a bug)")
    if args.out:
        status(f"wrote {layer_curves(table, args.out, title=f'Next-token prediction: {model.name}')}")
    wide = table.pivot(index="layer", columns="method", values=["precision_at_1", "surprisal"])
    wide.columns = [f"{'P@1' if v == 'precision_at_1' else 'surprisal'} {m}" for v, m in wide.columns]
    emit(table, args, wide.reset_index().to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise LayerscopeError(f"{name} must be 'all' or a positive integer, got {text!r}") from None
    if value < 1:
        raise LayerscopeError(f"{name} must be 'all' or a positive integer, got {text!r}")
    return value


def _eval_attributes(args: argparse.Namespace) -> None:
    import pandas as pd

    from layerscope.methods.patchscopes.attributes import eval_attributes
    from layerscope.methods.patchscopes.plots import pair_heatmap

    relations = [r.strip() for r in args.relations.split(",") if r.strip()] if args.relations else None
    limit = None if args.limit == "all" else _positive_int(args.limit, "--limit")
    model = load_model(args)
    start = time.perf_counter()
    result = eval_attributes(
        model,
        relations,
        limit=limit,
        probe=not args.no_probe,
        on_relation=lambda name: status(f"relation {name} ..."),
        recipe=args.recipe,
        **options(
            args, "source_layers", "target_layers", "max_new_tokens", "folds", "seed", "resume", "restart",
            "batch_budget",
        ),
        **distributed_options(args),
    )  # fmt: skip
    status(f"attribute extraction done in {time.perf_counter() - start:.1f}s")
    pairs, probe, summary = result["pairs"], result["probe"], result["summary"]
    if args.out:
        status(f"wrote {pair_heatmap(pairs, args.out, title=f'Attribute extraction: {model.name}')}")
    _save_items(result["items"], args.save_items)
    rows = pairs.assign(method="patchscope")
    if len(probe):
        probe_rows = probe.rename(columns={"layer": "source_layer", "probe_accuracy": "accuracy"})
        rows = pd.concat([rows, probe_rows.assign(method="probe", target_layer=None)], ignore_index=True)
    rows = rows[["relation", "method", "source_layer", "target_layer", "accuracy", "n"]]
    emit(rows, args, summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


# ---- registration ---------------------------------------------------------------------------


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command(
        "patchscope",
        cmd_patchscope,
        "decode a hidden state through an inspection prompt at every layer (Patchscopes)",
        "Take resid_post[l] of --source at --position and patch it into --target at layer l* (the\n"
        "placeholder word 'x' of the target, else its last token), then let the model generate. All\n"
        "(l, l*) pairs run as one batch of variants; generation uses the KV cache with the patch on the\n"
        "prompt pass only. Targets: 'identity' (next-token identity prompt), 'describe' (the paper's\n"
        "entity-description prompt), or any prompt with the placeholder x.\n\n"
        "examples:\n"
        "  layerscope patchscope --source 'Alexander the Great' --target describe --source-layers ::3\n"
        "  layerscope patchscope --source 'I visited Italy last year.' --position Italy \\\n"
        "      --target 'Japan: Tokyo; Britain: London; Russia: Moscow; x:' --source-layers 2,4,8   # ' Rome'\n"
        "  layerscope patchscope --source 'The Eiffel Tower' --target-model gemma3-270m --source-layers 10 \\\n"
        "      --target-layers 6 --target describe      # cross-model: an affine map fitted on shared text\n"
        "  layerscope patchscope --source 'The Eiffel Tower' --target-model gemma3-270m \\\n"
        "      --target-layers '6->3,12->6,18->9' --target describe   # only these (l, l*) pairs",
    )
    p.add_argument("--source", required=True, help="the source prompt S")
    p.add_argument("--position", default="last", help="source position i: an int, a substring, or 'last' (default)")
    p.add_argument("--target", default="identity", help="identity | describe | any prompt with the placeholder x")
    p.add_argument("--target-position", help="target position i* (default: the placeholder x, else the last token)")
    p.add_argument("--source-layers", default="all", help="l: 'all' (default), an int, 'a,b,c', 'a:b' or 'a:b:step'")
    p.add_argument(
        "--target-layers",
        default="same",
        help="l*: 'same' (l* = l, default), 'all', a layer list / range (every (l, l*) combination), or "
        "explicit pairs source->target, e.g. '6->3,12->6' (the pairs pick the source layers)",
    )
    p.add_argument("--max-new-tokens", type=int, default=20, help="tokens to generate (default: 20; 0: next token)")
    p.add_argument("--target-model", help="another model M* (e.g. gemma3-270m): fits an affine map per (l, l*)")
    p.add_argument("--map-texts", type=int, default=120, help="corpus lines for the cross-model map fit (default: 120)")
    p.add_argument(
        "--recipe",
        default="paper",
        choices=["paper", "authors"],
        help="paper (default): h = resid_post[l] at every l; authors: their patchscopes_utils.py, whose h at "
        "the last layer is HF's hidden state after the final norm. --source-last overrides it; rows record both",
    )
    p.add_argument(
        "--source-last",
        choices=["pre-norm", "post-norm"],
        help="the source state at the last layer: pre-norm resid_post[L-1] (paper) or post-norm (authors); "
        "(L-1, L-1) within one model is the same either way",
    )
    p.add_argument("--out", help="write a PNG grid of the first generated token per (l, l*), coloured by its prob")
    add_batch_budget(p)

    p = command(
        "eval",
        cmd_eval,
        "Patchscopes evaluations: next-token, attributes, describe",
        "Evaluations of the Patchscopes paper on the shipped data.\n\n"
        "examples:\n"
        "  layerscope eval next-token --methods patchscope,logit-lens,tuned-lens --out next_token.png\n"
        "  layerscope eval attributes --limit 5 --source-layers ::6 --target-layers ::6 --out pairs.png\n"
        "  layerscope eval describe --limit 20 --layers ::3 --out rouge.png\n"
        "  layerscope eval multihop --limit 10",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    q = add_action(
        sub,
        "next-token",
        cmd_eval,
        "Precision@1 and Surprisal per layer: Patchscope vs logit lens vs tuned lens",
        "Per source layer l, the top next token read from resid_post[l] by each method is compared\n"
        "with the model's own final prediction at that position: Precision@1 and Surprisal (-ln p_final of\n"
        "the method's token, nats). patchscope = the token-identity prompt with l* = l; tuned-lens = an\n"
        "affine map per layer fitted by least squares with bias on the other 3/4 of the shipped corpus,\n"
        "cached as a file (a second run reuses it). Default texts: the held-out quarter of the corpus.\n"
        "Every method is 1.0 at the last layer by construction.\n\n"
        "example:  layerscope eval next-token --positions 6 --out next_token.png",
    )
    q.add_argument("--texts", help="a text file, one passage per line (default: held-out shipped corpus lines)")
    q.add_argument("--limit", type=int, help="use only the first N texts (of --texts, or of the default lines)")
    q.add_argument("--methods", default="patchscope,logit-lens,tuned-lens", help="comma-separated (default: all three)")
    q.add_argument("--positions", default="6", help="'all' or N positions per line (seeded sample; default: 6)")
    q.add_argument("--layers", default="all", help="source layers (default: all)")
    q.add_argument("--tuned-lens", help="a tuned-lens file: loaded if it exists, else the fitted lens is saved there")
    q.add_argument("--seed", type=int, default=0, help="position sampling seed (default: 0)")
    q.add_argument(
        "--recipe",
        default="paper",
        choices=["paper", "authors"],
        help="position sampling: paper = positions 1..T-1 (default); authors = 0..T-2 (their notebooks)",
    )
    q.add_argument("--out", help="write a PNG of Precision@1 and Surprisal vs layer here")
    add_resume(q, "finished chunks of 16 texts are skipped")
    add_distributed(q, "chunks of 16 texts")
    add_batch_budget(q)

    q = add_action(
        sub,
        "attributes",
        cmd_eval,
        "attribute extraction over (l, l*) pairs vs a linear probe",
        "For each shipped relation (e.g. country_currency: 'The official currency of x is the'), the\n"
        "subject's last-token state in a neutral source sentence is patched into the template's x at every\n"
        "(l, l*) pair; correct if the object or an alias appears in the generated tokens. Baseline: a\n"
        "logistic-regression probe per source layer (3-fold CV) on all subjects of the relation. The\n"
        "default layer stride and subject sample keep a CPU run to minutes; the paper's sweep is\n"
        "--source-layers all --target-layers all --limit all.\n\n"
        "example:  layerscope eval attributes --relations country_currency,country_capital --limit 10",
    )
    q.add_argument("--relations", help="comma-separated relation names (default: all shipped)")
    q.add_argument("--limit", default="5", help="subjects per relation for the Patchscope, or 'all' (default: 5)")
    q.add_argument("--source-layers", default="::6", help="l (default: every 6th layer, '::6')")
    q.add_argument("--target-layers", default="::6", help="l* (default: every 6th layer, '::6')")
    q.add_argument("--max-new-tokens", type=int, default=20, help="tokens generated per run (default: 20)")
    q.add_argument("--folds", type=int, default=3, help="probe cross-validation folds (default: 3)")
    q.add_argument("--no-probe", action="store_true", help="skip the probe baseline")
    q.add_argument(
        "--recipe",
        default="paper",
        choices=["paper", "authors"],
        help="paper: every sampled subject and layer (default); authors: only subjects the model completes "
        "unpatched, and no last layer (their notebooks)",
    )
    q.add_argument("--seed", type=int, default=0, help="subject sampling / fold seed (default: 0)")
    add_resume(q, "finished relations are skipped")
    add_distributed(q, "relations (one unit each)")
    q.add_argument("--out", help="write a PNG heatmap of accuracy per (l, l*) (mean over relations) here")
    q.add_argument("--save-items", metavar="FILE", help="write every generated item here (.csv, .json or .parquet)")
    add_batch_budget(q)

    multihop_cli.add(sub, cmd_eval)

    describe_cli.add(sub, cmd_eval)
