"""``models``, ``info`` and ``capture``: the commands that are no method of their own."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerscope.cli.common import emit, load_model, read_texts, status
from layerscope.errors import LayerscopeError


def cmd_models(args: argparse.Namespace) -> None:
    from layerscope.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

    rows = [
        {
            "model": m.name,  # the rows contract: every row names its model
            "name": m.name,
            "default": m.name == DEFAULT_MODEL,
            "installed": m.is_installed(),
            "kind": m.kind,
            "hf_name": m.hf_name,
            "description": m.description,
            "install": m.install,
        }
        for m in BUILTIN_MODELS.values()
    ]
    shown = ["name", "default", "installed", "kind", "hf_name", "description"]
    if not args.json and not args.save:  # the common look-up: answered without importing pandas
        print(plain_table([{k: r[k] for k in shown} for r in rows]))
        return
    import pandas as pd

    table = pd.DataFrame(rows)
    emit(table, args, table[shown])


def plain_table(rows: list[dict]) -> str:
    """Rows as left-aligned text columns (what ``DataFrame.to_string(index=False)`` shows, for a few rows)."""
    columns = list(rows[0])
    cells = [[str(c) for c in columns], *[[str(r[c]) for c in columns] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def cmd_info(args: argparse.Namespace) -> None:
    import pandas as pd

    info = load_model(args).info()
    table = pd.DataFrame([vars(info)])
    emit(table, args, "\n".join(f"{k:>13}: {v}" for k, v in vars(info).items()))


def cmd_capture(args: argparse.Namespace) -> None:
    import pandas as pd

    from layerscope.capture import capture_batches, plan_capture
    from layerscope.engine.chunking import parse_budget
    from layerscope.engine.interventions import resolve_layers
    from layerscope.readout.tokens import token_strings
    from layerscope.results.save import check_writable
    from layerscope.results.states import write_states

    texts = list(args.text)
    if args.texts:
        texts += read_texts(args.texts)
    if not texts:
        raise LayerscopeError("no text to capture: give TEXT arguments or --texts FILE")
    out = Path(args.out)
    sharded = out.suffix != ".safetensors"
    if sharded and out.suffix:
        raise LayerscopeError(f"--out must be FILE.safetensors or a folder (for shards), got {out.name}")
    if not sharded:
        check_writable(out, "--out")
    if args.batch_size < 1:
        raise LayerscopeError(f"--batch-size must be at least 1, got {args.batch_size}")
    shard_size = parse_budget(args.shard_size)
    model = load_model(args)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    layers = resolve_layers(args.layers, model.n_layers)
    if sharded:
        plan = plan_capture(model, texts, sites, layers, shard_size)
        status(f"will write {_size(plan.total_bytes)} of states in {len(plan.ranges)} shard(s) to {out}/")
        _capture_shards(model, texts, out, sites, layers, plan, shard_size, args)
        n_positions = max(plan.lengths)
    else:
        batch = model.tokenize(texts)  # one padded layout for the whole file
        per_token = len(sites) * len(layers) * model.d_model * model.dtype.itemsize
        status(f"will write {_size(batch.size * batch.length * per_token)} of states to {out} "
               "(for a large text set, give --out a folder: shards are streamed to disk)")  # fmt: skip
        tensors = capture_batches(model, batch, sites, layers, args.batch_size)
        tensors["input_ids"] = batch.input_ids.cpu()
        tensors["attention_mask"] = batch.attention_mask.cpu()
        layout = {site: {"layers": layers, "dims": ["layer", "prompt", "position", "hidden"],
                         "shape": list(tensors[site].shape)} for site in sites}  # fmt: skip
        sidecar = {"model": model.name, "source": model.source, "texts": texts,
                   "tokens": [token_strings(model.tokenizer, row) for row in batch.input_ids.tolist()],
                   "padding": "left", "pad": batch.pad, "layout": layout,
                   "note": "resid_post[l] is the output of block l, before the final norm"}  # fmt: skip
        out, side = write_states(out, tensors, sidecar)
        status(f"wrote {out} and {side}")
        n_positions = batch.length
    rows = [
        {"site": s, "layer": l, "n_prompts": len(texts), "n_positions": n_positions, "d_model": model.d_model,
         "file": str(out)}
        for s in sites
        for l in layers
    ]  # fmt: skip
    summary = f"captured {', '.join(sites)} at {len(layers)} layers for {len(texts)} prompt(s) -> {out}"
    emit(pd.DataFrame(rows), args, summary)


def _capture_shards(model, texts, out: Path, sites, layers, plan, shard_size: int, args: argparse.Namespace) -> None:
    from layerscope.capture import capture_to_shards
    from layerscope.progress import bar as progress_bar

    bar = progress_bar(progress=not args.json, total=len(plan.ranges), desc="capture", unit="shard")
    try:
        capture_to_shards(model, texts, out, sites=sites, layers=layers, shard_size=shard_size,
                          batch_size=args.batch_size, restart=args.restart, plan=plan,
                          on_shard=lambda done, _: bar.update(done - bar.n))  # fmt: skip
    finally:
        bar.close()
    status(f"wrote {len(plan.ranges)} shard(s) and {out / 'index.json'} (read: layerscope.results.shards.iter_shards)")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    command("models", cmd_models, "list the built-in models and whether each is installed")
    command("info", cmd_info, "show a model's name, source, layers, hidden size, vocabulary, architecture")

    p = command(
        "capture",
        cmd_capture,
        "capture hidden states to a .safetensors file (+ a JSON sidecar)",
        "Capture states at sites for one or more prompts. Tensors are [layer, prompt, position, hidden],\n"
        "left-padded; the sidecar JSON lists the tokens, padding and layout. With --out DIR the texts go\n"
        "into shards of --shard-size (each padded to its own longest text), computed and written one at a\n"
        "time, so memory holds one shard; the size of the whole capture is printed before it starts.\n\n"
        'example:  layerscope capture "Hello world" "The sky is" --sites resid_post --out states.safetensors\n'
        "          layerscope capture --texts corpus.txt --layers ::4 --out states/ --shard-size 256MB",
    )
    p.add_argument("text", nargs="*", help="prompts")
    p.add_argument("--texts", help="a text file with one prompt per line (added to TEXT)")
    p.add_argument("--sites", default="resid_post", help="comma-separated: resid_pre,resid_post,attn_out,mlp_out")
    p.add_argument("--layers", default="all", help="layers: all, N, A:B or A,B,C (default: all)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    p.add_argument(
        "--out",
        required=True,
        help="FILE.safetensors (one file, sidecar FILE.json beside it), or a folder: shards of --shard-size "
        "streamed to disk one at a time, with DIR/index.json; a rerun resumes an interrupted capture",
    )
    p.add_argument("--shard-size", default="1GB", help="states per shard with --out DIR (default: 1GB)")
    p.add_argument("--restart", action="store_true", help="with --out DIR: replace a capture of another config")
