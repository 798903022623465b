"""``rerun CONFIG``: repeat a run saved with ``--save`` from its ``STEM.config.json``."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from layerscope.cli.common import status
from layerscope.errors import ConfigError

#: options of the saved command line that say where output goes, not what is computed
OUTPUT_OPTIONS = ("--save", "--json")


def saved_argv(config_file: str | Path) -> tuple[list[str], dict]:
    """The saved command line without its output options, and the whole config."""
    path = Path(config_file)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not JSON ({error.msg}): give the STEM.config.json that --save wrote") from None
    if not isinstance(config, dict) or "argv" not in config or config.get("layerscope_config") != 1:
        raise ConfigError(f"{path} is no layerscope run config (written by --save FILE as STEM.config.json)")
    return strip_output_options(config["argv"]), config


def strip_output_options(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--save":
            skip = True
            continue
        if arg == "--json" or arg.startswith("--save="):
            continue
        out.append(arg)
    return out


def cmd_rerun(args: argparse.Namespace) -> None:
    from layerscope.cli.main import build_parser

    argv, config = saved_argv(args.config)
    if argv and argv[0] == "rerun":
        raise ConfigError(f"{args.config} records a rerun, not a run")
    argv += ["--json"] if args.json else []
    argv += ["--save", args.save] if args.save else []
    status(f"rerun: layerscope {shlex.join(argv)}")
    inner = build_parser().parse_args(argv)
    inner.argv = argv
    inner.func(inner)
    for saved, loaded in zip(config.get("models", []), getattr(inner, "loaded_models", []), strict=False):
        from layerscope.results.save import model_hash

        if saved.get("hash") and model_hash(loaded) != saved["hash"]:
            status(f"warning: {loaded.name}'s weights differ from the saved run's (hash {saved['hash']})")


def register(command) -> None:
    """Add ``rerun`` through ``command(name, func, help, description)``."""
    p = command(
        "rerun",
        cmd_rerun,
        "repeat a run saved with --save, from its STEM.config.json",
        "Repeat the command recorded in CONFIG (the STEM.config.json that --save FILE wrote beside FILE)\n"
        "with the same arguments: it gives the same rows. --json and --save apply to the rerun.\n\n"
        "example:  layerscope lens 'The capital of France is' --save lens.parquet\n"
        "          layerscope rerun lens.config.json --json",
    )
    p.add_argument("config", help="the STEM.config.json written by --save")
