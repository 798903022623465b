"""``layerscope eval multihop``: the multi-hop (CoT) Patchscope from the command line."""

from __future__ import annotations

import argparse
import time

from layerscope.cli.common import add_action, add_batch_budget, emit, load_model, options, status


def run(args: argparse.Namespace) -> None:
    from layerscope.methods.patchscopes.cli import _positive_int as positive_int
    from layerscope.methods.patchscopes.cli import _save_items as save_items
    from layerscope.methods.patchscopes.multihop import eval_multihop, load_two_hop

    limit = None if args.limit == "all" else positive_int(args.limit, "--limit")
    facts = load_two_hop(limit)
    model = load_model(args)
    status(f"multi-hop Patchscope on {len(facts)} two-hop facts ...")
    start = time.perf_counter()
    result = eval_multihop(
        model, facts, **options(args, "source_layers", "target_layers", "max_new_tokens", "batch_budget")
    )
    s = result["summary"].iloc[0]
    status(f"done in {time.perf_counter() - start:.1f}s")
    status(
        f"end to end {s['end_to_end_accuracy']:.3f}, hop 1 {s['hop1_accuracy']:.3f}, hop 2 {s['hop2_accuracy']:.3f}; "
        f"of the {s['wrong_end_to_end']} questions wrong end to end, patching fixes {s['fixed_at_best_pair']:.3f} "
        f"at the best pair {s['best_pair']} and {s['fixed_at_any_pair']:.3f} at some pair"
    )
    save_items(result["items"], args.save_items)
    pairs = result["pairs"]
    emit(pairs, args, pairs[["source_layer", "target_layer", "accuracy", "fixed", "n"]].to_string(index=False))


def add(sub, command) -> None:
    """Add the ``multihop`` action to ``layerscope eval``'s subparsers ``sub``."""
    q = add_action(
        sub,
        "multihop",
        command,
        "multi-hop (CoT) Patchscope: hop 1's answer state patched into hop 2, vs the end-to-end question",
        "For each shipped two-hop fact (e.g. 'The capital city of the country where the Eiffel Tower is\n"
        "located is'), resid_post[l] at the last token of hop 1 ('The Eiffel Tower is located in the country\n"
        "of') is patched into the x of hop 2 ('The capital city of x is') at l*; correct if the answer appears\n"
        "in the generated tokens. Reports how often patching fixes a question the model gets wrong end to\n"
        "end, beside the end-to-end, hop-1 and hop-2 baselines.\n\n"
        "example:  layerscope eval multihop --limit 10 --source-layers ::6 --target-layers ::6",
    )
    q.add_argument("--limit", default="all", help="the first N two-hop facts, or 'all' (default: all)")
    q.add_argument("--source-layers", default="::6", help="l (default: every 6th layer, '::6')")
    q.add_argument("--target-layers", default="::6", help="l* (default: every 6th layer, '::6'; 'same': l* = l)")
    q.add_argument("--max-new-tokens", type=int, default=8, help="tokens generated per run (default: 8)")
    q.add_argument("--save-items", metavar="FILE", help="write every patched item here (.csv, .json or .parquet)")
    add_batch_budget(q)
