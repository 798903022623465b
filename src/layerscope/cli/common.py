"""Options every command shares, model loading with status on stderr, and result output.

stdout carries only results: a readable table, or with ``--json`` a JSON array of row objects
and nothing else. Everything else (progress, timings, where files went) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from layerscope.errors import LayerscopeError

if TYPE_CHECKING:  # pandas is imported when rows are output, not for --help
    import pandas as pd


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--model",
        default=None,
        help="built-in name (smollm2-135m [default], gemma3-270m, minilm-l6), a .gguf file, "
        "a local Hugging Face folder, or a hub id already in the local hub cache",
    )
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    group.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="weights and activations dtype (default: float32)",
    )
    group.add_argument(
        "--device-map",
        metavar="MAP",
        help="split the model over devices (accelerate): auto, balanced, sequential (default: all on --device)",
    )
    group.add_argument(
        "--max-memory",
        metavar="BUDGETS",
        help="memory per device, e.g. cpu=2GB or 0=20GB,1=20GB,cpu=60GB (a bare size is the CPU's): what does "
        "not fit is offloaded to disk and streamed in block by block, same numbers (implies --device-map auto)",
    )
    group.add_argument("--offload-folder", metavar="DIR", help="where --max-memory offloads (default: a temp folder)")
    group.add_argument(
        "--json",
        action="store_true",
        help="print the result table as a JSON array of row objects, and nothing else, on stdout",
    )
    group.add_argument(
        "--save",
        metavar="FILE",
        help="also write the rows to FILE (.parquet, .csv or .json, checked before anything runs) and the run's "
        "config to STEM.config.json beside it; `layerscope rerun STEM.config.json` repeats the run",
    )


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_texts(path: str) -> list[str]:
    """The non-empty lines of a text file (``--texts FILE``), stripped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LayerscopeError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise LayerscopeError(f"{path} is not UTF-8 text (byte {error.start}); give a UTF-8 text file") from None
    return [line.strip() for line in lines if line.strip()]


def check_device(device: str) -> None:
    """``--device cuda`` / ``mps`` where there is none: one line before anything loads."""
    import torch

    kind = str(device).split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise LayerscopeError(f"--device {device}: this machine has no CUDA device (torch sees none); use --device cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LayerscopeError(f"--device {device}: MPS is not available on this machine; use --device cpu")


def load_model(args: argparse.Namespace):
    from layerscope.models.model import load

    check_device(args.device)
    start = time.perf_counter()
    model = load(args.model, device=args.device, dtype=args.dtype, progress=not args.json, **placement(args))
    status(
        f"loaded {model.name} ({model.n_layers} layers, d_model {model.d_model}) in {time.perf_counter() - start:.1f}s"
    )
    placed = getattr(model.hf, "hf_device_map", None)
    if placed and (len(set(placed.values())) > 1 or "disk" in placed.values()):
        from collections import Counter

        counts = Counter(str(d) for d in placed.values())
        status("placement: " + ", ".join(f"{n} module(s) on {d}" for d, n in sorted(counts.items()))
               + (" (offloaded: streamed in as the forward reaches them)" if "disk" in counts else ""))  # fmt: skip
    remember_model(args, model)
    return model


def parse_max_memory(text: str) -> dict[int | str, int]:
    """``"0=20GB,cpu=60GB"`` -> ``{0: 20e9, "cpu": 60e9}`` (accelerate's ``max_memory``); ``"2GB"`` -> the CPU's."""
    from layerscope.engine.chunking import parse_budget

    budgets: dict[int | str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        device, _, size = part.rpartition("=")
        device = device.strip() or "cpu"
        if not (device == "cpu" or device == "disk" or device.isdigit()):
            raise LayerscopeError(f"--max-memory {text}: {device!r} is not a device (use cpu or a GPU index: 0, 1)")
        budgets[int(device) if device.isdigit() else device] = parse_budget(size)
    if not budgets:
        raise LayerscopeError("--max-memory is empty: give e.g. cpu=2GB")
    return budgets


def placement(args: argparse.Namespace) -> dict:
    """``ls.load`` keywords for ``--device-map``, ``--max-memory`` and ``--offload-folder``."""
    out = {}
    if getattr(args, "device_map", None):
        out["device_map"] = args.device_map
    if getattr(args, "max_memory", None):
        out["max_memory"] = parse_max_memory(args.max_memory)
    if getattr(args, "offload_folder", None):
        if not getattr(args, "max_memory", None):
            raise LayerscopeError("--offload-folder goes with --max-memory (what does not fit there is offloaded)")
        out["offload_folder"] = args.offload_folder
    return out


def remember_model(args: argparse.Namespace, model) -> None:
    """Note a model this run loaded: its name fills the rows' ``model``, its hash goes into ``--save``'s config."""
    if not hasattr(args, "loaded_models"):
        args.loaded_models = []
    args.loaded_models.append(model)


def emit(table: pd.DataFrame, args: argparse.Namespace, readable: pd.DataFrame | str | None = None) -> None:
    """Print ``table`` as JSON rows (``--json``) or a readable table (``readable`` if given); with
    ``--save``, write the same rows and the run's config.

    The one output path of every command: rows get ``model`` and ``method`` here when the method
    did not name them (the results contract), so ``--json`` and ``--save`` always carry them.
    """
    from layerscope.results.io import table_records

    table = contract_rows(table, args)
    if getattr(args, "save", None):
        save(table, args)
    if args.json:
        json.dump(table_records(table), sys.stdout)
        sys.stdout.write("\n")
        return
    shown = table if readable is None else readable
    print(shown if isinstance(shown, str) else shown.to_string(index=False))


def options(args: argparse.Namespace, *names: str) -> dict:
    """The options ``names`` as the API's keyword arguments (an option is named like its keyword),
    with ``progress``: a bar on stderr unless ``--json``."""
    return {name: getattr(args, name) for name in names} | {"progress": not args.json}


def contract_rows(table: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """``table`` with ``model`` (the loaded model's name) and ``method`` (the command's method)."""
    from layerscope.results.contract import check_rows, tidy

    loaded = getattr(args, "loaded_models", [])
    model = loaded[0].name if len(loaded) == 1 else args.model
    rows = tidy(table, model=model, method=getattr(args, "method_name", None) or args.command)
    check_rows(rows)  # a command whose rows could not name their model fails here, not in a user's notebook
    return rows


def command_of(args: argparse.Namespace) -> list[str]:
    """``["eval", "next-token"]``: the command and its action, if it has one."""
    action = getattr(args, "action", None)
    return [args.command] + ([action] if action else [])


def save(table: pd.DataFrame, args: argparse.Namespace) -> None:
    """``--save FILE``: the rows, and ``STEM.config.json`` with what repeats the run."""
    from layerscope.results.save import model_hash, save_rows

    skip = {"func", "parser", "loaded_models", "method_name", "save", "json", "argv"}
    arguments = {k: v for k, v in vars(args).items() if k not in skip and not k.startswith("_")}
    models = [
        {"name": m.name, "source": str(m.source), "hash": model_hash(m)} for m in getattr(args, "loaded_models", [])
    ]
    rows, config = save_rows(
        table,
        args.save,
        command=command_of(args),
        argv=list(getattr(args, "argv", [])),
        arguments=json.loads(json.dumps(arguments, default=str)),
        models=models,
    )
    status(f"wrote {rows} and {config}")


COMMON_DESTS = ("model", "device", "dtype", "device_map", "max_memory", "offload_folder", "json", "save")


def add_action(actions, name: str, func, help_text: str, description: str) -> argparse.ArgumentParser:
    """A sub-action (``layerscope eval next-token``) with the common options.

    The action's copies of the common options default to "not given", so a value placed before the
    action (``layerscope loop --json verify``) is not overwritten by the action's default.
    """
    parser = actions.add_parser(
        name, help=help_text, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_options(parser)
    for option in parser._actions:
        if option.dest in COMMON_DESTS:
            option.default = argparse.SUPPRESS
    parser.set_defaults(func=func)
    return parser


def add_resume(parser: argparse.ArgumentParser, what: str) -> None:
    """``--resume FILE`` and ``--restart``, defined once for every resumable command (``what``: what is skipped)."""
    parser.add_argument(
        "--resume",
        metavar="FILE",
        help=f"checkpoint file (JSON lines): {what} on a rerun. A file that is not a layerscope checkpoint is "
        "never touched; a checkpoint of another config is an error naming the differing keys",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="with --resume: start the checkpoint over when its config differs (its rows are discarded)",
    )


def add_batch_budget(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--batch-budget``, defined once for every command that chunks its work (``note``: what it bounds there)."""
    from layerscope.engine.chunking import DEFAULT_BUDGET

    parser.add_argument(
        "--batch-budget",
        default=DEFAULT_BUDGET,
        help=f"memory for the activations of one forward chunk, e.g. 512MB or 4GB (default: {DEFAULT_BUDGET})"
        + (f"; {note}" if note else ""),
    )

def add_distributed(parser: argparse.ArgumentParser, what: str) -> None:
    """Add the distributed options; ``what`` names the units (e.g. "pairs")."""
    group = parser.add_argument_group("scale out (Ray; pip install 'layerscope[ray]')")
    group.add_argument(
        "--workers", type=int, help=f"run the {what} on N Ray workers of a local cluster started for the run "
        "(each holds one model replica; 1 torch thread each)"
    )  # fmt: skip
    group.add_argument("--ray", metavar="ADDRESS", help="run on an existing Ray cluster (e.g. auto)")
    group.add_argument(
        "--gpus-per-worker", type=float, help="GPUs per worker (default: 1 where the cluster has GPUs, else 0)"
    )


def distributed_options(args: argparse.Namespace) -> dict:
    """``run_units`` keywords from the parsed options (workers load what the driver's ``ls.load`` was given)."""
    workers, address = getattr(args, "workers", None), getattr(args, "ray", None)
    if workers is None and address is None:
        return {}
    if workers is not None and workers < 1:
        raise LayerscopeError(f"--workers must be at least 1, got {workers}")
    if (getattr(args, "gpus_per_worker", None) or 0.0) < 0:
        raise LayerscopeError(f"--gpus-per-worker must be 0 or more, got {args.gpus_per_worker}")
    return {"workers": workers, "address": address, "gpus_per_worker": args.gpus_per_worker}
