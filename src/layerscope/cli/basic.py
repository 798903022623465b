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
    import torch
    from tqdm.auto import tqdm

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
    if out.suffix != ".safetensors":
        raise LayerscopeError(f"--out must end in .safetensors, got {out.name}")
    check_writable(out, "--out")
    if args.batch_size < 1:
        raise LayerscopeError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = load_model(args)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    layers = resolve_layers(args.layers, model.n_layers)
    batch = model.tokenize(texts)  # one padded layout for the whole file
    chunks: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    for start in tqdm(
        range(0, batch.size, args.batch_size), desc="capture", disable=args.json or batch.size <= args.batch_size
    ):
        rows = slice(start, start + args.batch_size)
        sub = type(batch)(
            batch.prompts[rows],
            batch.input_ids[rows],
            batch.attention_mask[rows],
            None if batch.position_ids is None else batch.position_ids[rows],
            batch.pad[rows],
        )
        result = model.run(sub, capture=[(s, layers) for s in sites], logits=None)
        for site in sites:
            chunks[site].append(result.stack(site, layers).cpu())
    tensors = {site: torch.cat(parts, dim=1).contiguous() for site, parts in chunks.items()}
    tensors["input_ids"] = batch.input_ids.cpu()
    tensors["attention_mask"] = batch.attention_mask.cpu()
    out, sidecar = write_states(
        out,
        tensors,
        {
            "model": model.name,
            "source": model.source,
            "texts": texts,
            "tokens": [token_strings(model.tokenizer, row) for row in batch.input_ids.tolist()],
            "padding": "left",
            "pad": batch.pad,
            "layout": {
                site: {
                    "layers": layers,
                    "dims": ["layer", "prompt", "position", "hidden"],
                    "shape": list(tensors[site].shape),
                }
                for site in sites
            },
            "note": "resid_post[l] is the output of block l, before the final norm",
        },
    )
    status(f"wrote {out} and {sidecar}")
    rows = [
        {
            "site": s,
            "layer": l,
            "n_prompts": batch.size,
            "n_positions": batch.length,
            "d_model": model.d_model,
            "file": str(out),
        }
        for s in sites
        for l in layers
    ]
    emit(
        pd.DataFrame(rows),
        args,
        f"captured {', '.join(sites)} at {len(layers)} layers for {batch.size} prompt(s) -> {out}",
    )


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    command("models", cmd_models, "list the built-in models and whether each is installed")
    command("info", cmd_info, "show a model's name, source, layers, hidden size, vocabulary, architecture")

    p = command(
        "capture",
        cmd_capture,
        "capture hidden states to a .safetensors file (+ a JSON sidecar)",
        "Capture states at sites for one or more prompts. Tensors are [layer, prompt, position, hidden],\n"
        "left-padded; the sidecar JSON lists the tokens, padding and layout.\n\n"
        'example:  layerscope capture "Hello world" "The sky is" --sites resid_post --out states.safetensors',
    )
    p.add_argument("text", nargs="*", help="prompts")
    p.add_argument("--texts", help="a text file with one prompt per line (added to TEXT)")
    p.add_argument("--sites", default="resid_post", help="comma-separated: resid_pre,resid_post,attn_out,mlp_out")
    p.add_argument("--layers", default="all", help="layers: all, N, A:B or A,B,C (default: all)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    p.add_argument("--out", required=True, help="output FILE.safetensors (sidecar FILE.json next to it)")
