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

import pandas as pd

from layerscope.errors import LayerscopeError
from layerscope.results.io import table_records


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
        "--json",
        action="store_true",
        help="print the result table as a JSON array of row objects, and nothing else, on stdout",
    )


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_texts(path: str) -> list[str]:
    """The non-empty lines of a text file (``--texts FILE``), stripped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LayerscopeError(f"cannot read {path}: {error.strerror or error}") from None
    return [line.strip() for line in lines if line.strip()]


def load_model(args: argparse.Namespace):
    from layerscope.models.model import load

    start = time.perf_counter()
    model = load(args.model, device=args.device, dtype=args.dtype, progress=not args.json)
    status(
        f"loaded {model.name} ({model.n_layers} layers, d_model {model.d_model}) in {time.perf_counter() - start:.1f}s"
    )
    return model


def emit(table: pd.DataFrame, args: argparse.Namespace, readable: pd.DataFrame | str | None = None) -> None:
    """Print ``table`` as JSON rows (``--json``) or a readable table (``readable`` if given)."""
    if args.json:
        json.dump(table_records(table), sys.stdout)
        sys.stdout.write("\n")
        return
    shown = table if readable is None else readable
    print(shown if isinstance(shown, str) else shown.to_string(index=False))


COMMON_DESTS = ("model", "device", "dtype", "json")


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


def add_batch_budget(parser: argparse.ArgumentParser) -> None:
    from layerscope.engine.chunking import DEFAULT_BUDGET

    parser.add_argument(
        "--batch-budget",
        default=DEFAULT_BUDGET,
        help=f"memory for the activations of one forward chunk, e.g. 512MB or 4GB (default: {DEFAULT_BUDGET})",
    )
