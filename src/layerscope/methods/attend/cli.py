"""``attend``: Attend first, consolidate later (METHODS.md section 3): past-token manipulations and the switch."""

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
from layerscope.errors import LayerscopeError

SWEEP_COLUMNS = ["layer", "manipulation", "accuracy", "answer_prob", "n", "task", "clean_accuracy"]


def _split(text: str) -> list[str]:
    return [part for part in text.split(",") if part.strip()]


def _print_help(args: argparse.Namespace) -> None:
    args.parser.print_help()


def cmd_sweep(args: argparse.Namespace) -> None:
    import layerscope.methods.attend as attend
    from layerscope.engine.chunking import parse_budget
    from layerscope.results.io import Checkpoint

    names = [attend.canonical_manipulation(m) for m in _split(args.manipulation)]
    if not names:
        raise LayerscopeError("--manipulation is empty: use one or more of " + ", ".join(attend.MANIPULATIONS))
    parse_budget(args.batch_budget)
    items = attend.task_items(args.task, limit=args.limit, seed=args.seed)
    model = load_model(args)
    from layerscope.engine.interventions import resolve_layers

    layers = resolve_layers(args.layers, model.n_layers, sorted_unique=True)
    config = {
        "model": model.name,
        "task": args.task,
        "limit": args.limit,
        "manipulations": names,
        "layers": layers,
        "positions": args.positions,
        "seed": args.seed,
        "every_layer": args.every_layer,
        "match": args.match,
        "batch_budget": args.batch_budget,
        "recipe": args.recipe,
        "freeze_index": args.freeze_index,
        "skip_positions": args.skip_positions,
        "seeding": args.seeding,
    }
    checkpoint = Checkpoint(args.resume, config, restart=args.restart) if args.resume else None
    if checkpoint is not None and len(checkpoint):
        status(f"resuming from {args.resume}: {len(checkpoint)} item groups already done")
    status(
        f"attend sweep: {args.task} ({len(items)} items), {', '.join(names)} from layer k on, "
        f"k in {layers[0]}..{layers[-1]} ({len(layers)} layers), match {args.match} ..."
    )
    start = time.perf_counter()
    table = attend.sweep_task(
        model,
        items,
        names,
        layers,
        checkpoint=checkpoint,
        **options(args, "positions", "seed", "every_layer", "match", "batch_budget", "task"),
        recipe=args.recipe,
        freeze_index=args.freeze_index,
        skip_positions=args.skip_positions,
        seeding=args.seeding,
        **distributed_options(args),
    )
    status(f"done in {time.perf_counter() - start:.1f}s")
    clean = float(table["clean_accuracy"].iloc[0])
    status(f"clean accuracy {clean:.3f}, mean answer probability {float(table['clean_answer_prob'].iloc[0]):.3f}")
    for name, layer in attend.stable_from(table, args.tolerance).items():
        where = f"from layer {layer} on" if layer is not None else "at no swept layer to the end"
        status(f"{name}: accuracy stays within {args.tolerance:.0%} of clean accuracy {where}")
    if args.out:
        from layerscope.methods.attend.plots import attend_curves

        title = f"{args.task}: past-token manipulations from layer k on ({model.name})"
        status(f"wrote {attend_curves(table, args.out, title=title)}")
    readable = table.pivot(index="layer", columns="manipulation", values=["accuracy", "answer_prob"])
    readable = readable.reindex(columns=[(v, m) for v in ("accuracy", "answer_prob") for m in names])
    readable.columns = [f"{m} {'acc' if v == 'accuracy' else 'p'}" for v, m in readable.columns]
    emit(table[SWEEP_COLUMNS], args, readable.to_string(float_format=lambda v: f"{v:.3f}"))


def cmd_switch(args: argparse.Namespace) -> None:
    import layerscope.methods.attend as attend
    from layerscope.engine.chunking import parse_budget

    parse_budget(args.batch_budget)
    answers = _split(args.answers) if args.answers else []
    model = load_model(args)
    status(
        f"switch {args.position!r} of the prompt for {args.source_position!r} of {args.source!r} from layer k on ..."
    )
    table = attend.switch(
        model,
        args.prompt,
        args.position,
        args.source,
        args.source_position,
        answers,
        args.layers,
        every_layer=None if args.once is None else not args.once,
        batch_budget=args.batch_budget,
        progress=not args.json,
        recipe=args.recipe,
    )
    baselines = {c[len("clean_") :]: table[c].iloc[0] for c in table.columns if c.startswith("clean_p_")}
    clean = ", ".join(f"{k} {v:.3f}" for k, v in baselines.items())
    status(f"without the switch: top token {table['clean_top_token'].iloc[0]!r}" + (f", {clean}" if clean else ""))
    layer = attend.ignored_from(table)
    status(
        f"the switch is ignored from layer {layer} on (top token = the unswitched prompt's)"
        if layer is not None
        else "the switch is not ignored at the last swept layer"
    )
    if args.out:
        from layerscope.methods.attend.plots import switch_curves

        status(f"wrote {switch_curves(table, args.out, title=f'Switch {args.position!r} -> {args.source_position!r}')}")
    columns = ["layer", "top_token"] + [c for c in table.columns if c.startswith("p_")]
    emit(table[columns + ["top_prob", "ignored"]], args)


def _add_recipe(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--recipe",
        default="paper",
        choices=["paper", "authors"],
        help=f"paper: the paper's text (default); authors: the authors' llama_manipulate.py ({what}); "
        "each knob overrides it; rows record it",
    )


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    from layerscope.methods.attend import MANIPULATIONS, MATCHES, TASKS

    p = command(
        "attend",
        _print_help,
        "Attend first, consolidate later: past-token manipulations from layer k on, and the token switch",
        "Manipulate what later tokens read from earlier ones, from layer k on (Ben Artzy & Schwartz 2024).\n\n"
        "  sweep   task accuracy per k with every token but the last randomised, frozen, shuffled or\n"
        "          without attention from block k on\n"
        "  switch  one token's state replaced by a token's state from another prompt, from layer k on\n\n"
        "example:  layerscope attend sweep --task capitals --manipulation random,freeze --out curves.png",
    )
    p.set_defaults(parser=p)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, func, help_text: str, description: str) -> argparse.ArgumentParser:
        sub = add_action(actions, name, func, help_text, description)
        add_batch_budget(sub)
        sub.add_argument("--layers", default="all", help="k values: all, a:b, a:b:step or a,b,c (default: all)")
        return sub

    s = action(
        "sweep",
        cmd_sweep,
        "accuracy and answer probability per k under past-token manipulations",
        "For each k, manipulate every token but the last from block k on (random: norm-matched Gaussian\n"
        "at resid_pre[k]; freeze: resid_pre[k] fed to every later block; shuffle: dimensions permuted at\n"
        "resid_pre[k]; skip-attention: no attention update in blocks >= k) and score the task: exact match\n"
        "of the greedy continuation (manipulated at every generation step) and the probability of the\n"
        "answer's first token. One clean run; each k runs blocks k..L-1 only, batched.\n"
        "Reports the layer from which accuracy stays within --tolerance of the clean accuracy.\n\n"
        "example:  layerscope attend sweep --task capitals --manipulation random,freeze,shuffle,skip-attention \\\n"
        "              --layers 0:30:3 --limit 100 --out capitals.png --json",
    )
    s.add_argument("--task", required=True, choices=TASKS, help="shipped task (>= 100 items each)")
    s.add_argument(
        "--manipulation",
        default="random",
        help=f"one or more of {', '.join(MANIPULATIONS)}, comma-separated (default: random)",
    )
    s.add_argument("--limit", type=int, help="use only the first N items")
    s.add_argument(
        "--positions",
        default="previous",
        help="positions manipulated: previous (every token but the last, default), all, last, or a substring",
    )
    s.add_argument(
        "--every-layer",
        action="store_true",
        help="random/shuffle: re-apply at every layer >= k (default: once, at resid_pre[k])",
    )
    s.add_argument(
        "--match",
        default="greedy",
        choices=MATCHES,
        help="greedy: exact match of the greedy continuation (answer tokens, then a word boundary; default); "
        "first-token: only the answer's first token (one forward row per item, cheaper)",
    )
    s.add_argument("--seed", type=int, default=0, help="noise / permutation / item-order seed (default: 0)")
    s.add_argument(
        "--tolerance",
        type=float,
        default=0.1,
        help="report the layer from which accuracy >= (1 - tolerance) x clean (default: 0.1)",
    )
    _add_recipe(s, "their freeze index, skip-attention at all positions, their random/shuffle seeding")
    s.add_argument(
        "--freeze-index",
        choices=["ours", "authors"],
        help="ours: freeze resid_pre[k] (paper); authors: their k saves the input of block k-1 = our "
        "freeze at k-1, no k = 0 (default: the recipe's)",
    )
    s.add_argument(
        "--skip-positions",
        choices=["previous", "all"],
        help="skip-attention at every token but the last (paper: --positions) or at all tokens (authors)",
    )
    s.add_argument(
        "--seeding",
        choices=["layerscope", "authors"],
        help="random/shuffle draws: layerscope: one draw per row from --seed (paper); authors: their calls, "
        "randn per token from --seed and shuffle seeded by manual_seed(k x token) (default: the recipe's)",
    )
    s.add_argument("--out", help="write a PNG with one accuracy curve (and answer probability) per manipulation")
    add_resume(s, "finished item groups are not redone")
    add_distributed(s, "item groups (prompts of similar length, one unit each)")

    w = action(
        "switch",
        cmd_switch,
        "per k, the prediction with one token's state switched for another prompt's token",
        "Replace the state of the token at --position (resid_pre at every layer >= k; --once: at k only)\n"
        "by the state of the token at --source-position of --source at the same layer. Per k: the top next\n"
        "token and the probability of each --answers entry (its first token, as p_<answer stripped>), and\n"
        "the first layer from which the switch is ignored (top token = the unswitched prompt's).\n\n"
        "example:  layerscope attend switch \\\n"
        "              --prompt $'Q: What is the capital of Spain?\\nA: Madrid\\n"
        "Q: What is the capital of France?\\nA:' \\\n"
        "              --position France --source 'The country Italy' --source-position Italy \\\n"
        '              --answers " Paris"," Rome"',
    )
    w.add_argument("--prompt", required=True, help="the prompt (use $'...\\n...' in bash for newlines)")
    w.add_argument("--position", required=True, help="substring of the prompt: its last token is switched")
    w.add_argument("--source", required=True, help="the prompt the replacing state comes from")
    w.add_argument("--source-position", required=True, help="substring of --source: its last token's state is used")
    w.add_argument(
        "--answers", default="", help='comma-separated continuations with their leading space, e.g. " Paris"," Rome"'
    )
    w.add_argument(
        "--once",
        action="store_true",
        default=None,
        help="patch at resid_pre[k] only (the authors' switch; default: every layer >= k, or the recipe's)",
    )
    _add_recipe(w, "the switch patched once, at resid_pre[k]")
    w.add_argument("--out", help="write a PNG of the answers' probabilities per k")
