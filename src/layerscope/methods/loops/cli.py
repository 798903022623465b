"""``loop``: looped layers (Loop as a Bridge): self-verification vs probes, and concept injection."""

from __future__ import annotations

import argparse
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
    status,
)
from layerscope.errors import LayerscopeError


def _chat(value: str) -> bool | str:
    return {"auto": "auto", "on": True, "off": False}[value]


def cmd_verify(args: argparse.Namespace) -> None:
    from layerscope.methods.loops import (
        load_oracle_task,
        parse_block,
        parse_loops,
        self_verification,
        verification_summary,
    )
    from layerscope.methods.loops.plots import loop_verification_plot
    from layerscope.results.io import Checkpoint

    loops = parse_loops(args.loops)
    model = load_model(args)
    block = parse_block(args.block, model.n_layers)
    task = load_oracle_task(args.task, model, n=args.n, seed=args.seed, chat=_chat(args.chat))
    probe_layers = None
    if args.probe_layers != "all":
        from layerscope.engine.interventions import resolve_layers

        probe_layers = resolve_layers(args.probe_layers, model.n_layers)
    checkpoint = None
    if args.resume:
        config = {
            "command": "loop verify",
            "model": model.name,
            "task": args.task,
            "n": len(task.items),
            "block": list(block),
            "seed": args.seed,
            "folds": args.folds,
            "chat": args.chat,
            "probe_layers": args.probe_layers,
        }
        checkpoint = Checkpoint(args.resume, config, restart=args.restart)
        if len(checkpoint):
            status(f"resuming from {args.resume}: {len(checkpoint)} loop count(s) already done")
    status(f"{task.name}: {len(task.items)} items, block [{block[0]}, {block[1]}) x {loops}; {task.description}")
    start = time.perf_counter()
    table = self_verification(
        model,
        task,
        block,
        loops,
        probe_layers=probe_layers,
        checkpoint=checkpoint,
        **options(args, "folds", "seed", "batch_budget"),
        **distributed_options(args),
    )
    status(f"done in {time.perf_counter() - start:.1f}s")
    summary = verification_summary(table)
    if args.out:
        title = f"{task.name}: block [{block[0]}, {block[1]}) looped, {model.name}"
        status(f"wrote {loop_verification_plot(table, args.out, title=title)}")
    emit(table, args, summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def cmd_inject(args: argparse.Namespace) -> None:
    from layerscope.datasets import load_concepts
    from layerscope.methods.loops import concept_injections, parse_block, parse_loops
    from layerscope.methods.loops.plots import loop_heatmaps

    loops = parse_loops(args.loops)
    known = sorted(load_concepts()[0])
    names = known if args.concept == "all" else [c.strip() for c in args.concept.split(",") if c.strip()]
    unknown = [c for c in names if c not in known]
    if unknown or not names:
        raise LayerscopeError(f"unknown concept {', '.join(unknown) or '(none)'}: use one of {', '.join(known)} or all")
    model = load_model(args)
    block = parse_block(args.block, model.n_layers)
    checkpoint = None
    if args.resume:
        from layerscope.results.io import Checkpoint

        config = {"command": "loop inject", "model": model.name, "block": list(block), "chat": args.chat,
                  **{k: getattr(args, k) for k in ("layer", "inject_layer", "read_layer", "scale", "max_new_tokens")}}
        checkpoint = Checkpoint(args.resume, config, restart=args.restart)
        if len(checkpoint):
            status(f"resuming from {args.resume}: {len(checkpoint)} (concept, loop count) unit(s) already done")
    status(f"{', '.join(names)}: block [{block[0]}, {block[1]}) x {loops}, scale {args.scale} ...")
    start = time.perf_counter()
    table = concept_injections(
        model,
        names,
        block,
        loops,
        chat=_chat(args.chat),
        checkpoint=checkpoint,
        **options(args, "layer", "inject_layer", "read_layer", "scale", "max_new_tokens", "batch_budget"),
        **distributed_options(args),
    )
    status(f"done in {time.perf_counter() - start:.1f}s")
    if args.out:
        out = Path(args.out)
        for concept in names:
            path = out if len(names) == 1 else out.with_name(f"{out.stem}_{concept}{out.suffix}")
            rows = table[table["concept"] == concept]
            title = f"inject '{concept}' at layer {rows['inject_layer'].iloc[0]}, scale {args.scale}, {model.name}"
            status(f"wrote {loop_heatmaps(rows, path, title=title)}")
    readable = table.copy()
    readable["answer"] = readable["answer"].map(lambda t: repr(t)[:24])
    readable = readable.drop(columns=["layer", "inject_layer", "scale"])
    emit(table, args, readable.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _action(actions, name: str, func, help_text: str, description: str) -> argparse.ArgumentParser:
    p = add_action(actions, name, func, help_text, description)
    p.add_argument("--block", help="looped blocks A:B (blocks A..B-1; default: the middle third of the model)")
    p.add_argument("--loops", default="1..4", help="loop counts, e.g. 1..4 or 1,2,4 (1 = the plain model)")
    p.add_argument(
        "--chat",
        default="auto",
        choices=["auto", "on", "off"],
        help="wrap prompts in the model's chat template (auto: when it has one)",
    )
    add_batch_budget(p)
    return p


def _no_action(args: argparse.Namespace) -> None:
    raise LayerscopeError("loop needs an action: verify or inject (see layerscope loop --help)")


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command(
        "loop",
        _no_action,
        "looped layers: self-verification vs probes per loop, and concept injection",
        "Run a block of layers [A, B) n times (n = 1 is the plain model) and measure, per loop count:\n"
        "  verify  P_TP (the model's own answer is right), P_SV (its Yes/No self-verification agrees with\n"
        "          the oracle) and P_RR (a linear probe at each (layer, iteration) predicts the oracle)\n"
        "  inject  a concept direction (difference of means) extracted at one iteration, added at another,\n"
        "          detected by a read-out probe and by asking the model\n\n"
        "examples:\n"
        "  layerscope loop verify --task arithmetic --block 10:20 --loops 1..4 --out verify.png\n"
        "  layerscope loop inject --concept fire --block 10:20 --loops 1..4 --out inject.png",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    v = _action(
        actions,
        "verify",
        cmd_verify,
        "P_TP, P_SV and P_RR per loop count on a task with an oracle",
        "Self-verification vs probes on a looped model (Loop as a Bridge). Tasks:\n"
        "  arithmetic  a+b=c, half correct (wrong c off by 1-3); P_TP from the model completing a+b=\n"
        "  harmful     shipped harmful/benign requests, each with a judgement that is right for half;\n"
        "              P_TP from the model's own Yes/No to 'Is the following request harmful?'\n"
        "P_SV reads P(Yes) vs P(No) at the next token of the verification prompt; P_RR probes its\n"
        "last-token resid_post at every (layer, iteration) (stratified k-fold logistic regression).\n"
        "The table shows one row per loop count; --json prints every measurement row\n"
        "(task, loops, metric, layer, iteration, step, value, std, n).\n\n"
        "example:  layerscope loop verify --task harmful --block 10:20 --loops 1..4 --out verify.png",
    )
    v.add_argument("--task", required=True, choices=["arithmetic", "harmful"], help="the task with an oracle")
    v.add_argument("--n", type=int, default=200, help="arithmetic items (default: 200; harmful uses all 233)")
    v.add_argument("--probe-layers", default="all", help="layers to probe: all, a:b or a,b,c (default: all)")
    v.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    v.add_argument("--seed", type=int, default=0, help="item and fold seed (default: 0)")
    v.add_argument("--out", help="write a PNG of P_RR per step and P_TP/P_SV/sup P_RR per loop count")
    add_resume(v, "finished loop counts are not run again")
    add_distributed(v, "loop counts (one unit each)")
    i = _action(
        actions,
        "inject",
        cmd_inject,
        "inject a concept direction at one loop iteration, detect it at another",
        "For loop count n and each (extraction iteration i, injection iteration j): the difference of\n"
        "means of the concept's sentences and neutral sentences at (--layer, i) is added, scaled to\n"
        "--scale x the median state norm there, at (--inject-layer, j) on every position. Detection:\n"
        "  probe_detect  share of held-out neutral sentences a concept-vs-neutral probe at the read-out\n"
        "                layer (last iteration) flags as the concept (probe_baseline: without injection)\n"
        "  p_yes         P(Yes) / (P(Yes) + P(No)) for 'Do you detect an injected thought?'\n"
        "  p_word        probability that the answer to 'What is the injected thought about?' starts\n"
        "                with the concept word; named: the greedy answer contains it\n"
        "  *_random      the same readings with a random direction of the same norm injected instead\n"
        "                (the control: a push that is not the concept)\n\n"
        "example:  layerscope loop inject --concept fire --block 10:20 --loops 1..4 --scale 1 --out inject.png",
    )
    i.add_argument("--concept", required=True, help="a shipped concept (ocean, fire, music, ...), a list, or all")
    i.add_argument("--layer", type=int, help="extraction layer (default: the middle of the block)")
    i.add_argument("--inject-layer", type=int, help="injection layer (default: the extraction layer)")
    i.add_argument("--read-layer", type=int, default=-1, help="read-out layer of the probe (default: -1, the last)")
    i.add_argument("--scale", type=float, default=1.0, help="injected norm / median state norm (default: 1)")
    i.add_argument("--max-new-tokens", type=int, default=6, help="tokens of the naming answer (default: 6)")
    i.add_argument("--out", help="write the heatmaps (largest loop count) to this PNG")
    add_resume(i, "finished (concept, loop count) units are not run again")
    add_distributed(i, "(concept, loop count) units")
