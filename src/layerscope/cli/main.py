"""Entry point: ``layerscope COMMAND [options]``. Bad input exits 2 with a one-line message."""

from __future__ import annotations

import argparse
import os
import sys

from layerscope.cli import basic, claims, demo, explore, rerun
from layerscope.cli.common import add_common_options
from layerscope.errors import LayerscopeError
from layerscope.methods import METHODS, cli_module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerscope",
        description="Read, measure and operate on the hidden states of transformer LMs, layer by layer. "
        "Every command runs offline; `layerscope COMMAND --help` explains each one.",
    )
    parser.add_argument("--version", action="version", version=f"layerscope {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def adder(method: str | None):
        def command(name: str, func, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
            p = sub.add_parser(
                name,
                help=help_text,
                description=description or help_text,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            add_common_options(p)
            p.set_defaults(func=func, method_name=method or name)
            return p

        return command

    # the commands that are no method, then every registered method's, then `demo` last in --help
    basic.register(adder(None))
    for name in METHODS:
        cli_module(name).register(adder(name))
    rerun.register(adder(None))
    explore.register(adder(None))
    claims.register(adder(None))
    demo.register(adder(None))
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("layerscope")
    except metadata.PackageNotFoundError:
        import layerscope

        return layerscope.__version__


def value_options(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """``(options that take a value, every option string)`` of ``parser`` and its sub-parsers."""
    takes, every = set(), set()
    for action in parser._actions:
        every |= set(action.option_strings)
        if action.option_strings and isinstance(action, argparse._StoreAction) and action.nargs is None:
            takes |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                t, e = value_options(child)
                takes, every = takes | t, every | e
    return takes, every


def join_dash_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--batch-budget -5MB`` -> ``--batch-budget=-5MB``: argparse reads a value that starts with a dash
    as an option ("expected one argument"); joined, the value reaches the check that says what is wrong."""
    takes, every = value_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        following = argv[i + 1] if i + 1 < len(argv) else None
        if token in takes and following is not None and following.startswith("-") and following not in every:
            out.append(f"{token}={following}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(join_dash_values(argv, parser))
    args.argv = argv
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run parsed ``args``: ``--save`` is checked first, errors of ours exit 2 with one line."""
    from layerscope.engine.chunking import parse_budget
    from layerscope.results.io import check_resumable
    from layerscope.results.save import check_target, check_writable

    try:
        for option in ("save", "save_items"):  # a bad path or format fails before any model loads
            if getattr(args, option, None):
                check_target(args.save if option == "save" else args.save_items)
        if getattr(args, "out", None):
            check_writable(args.out, "--out")
        if getattr(args, "resume", None):
            check_resumable(args.resume)  # a file that is not a checkpoint is refused, and left alone
        if getattr(args, "batch_budget", None) is not None:
            parse_budget(args.batch_budget)  # so does a bad --batch-budget
        args.func(args)
    except LayerscopeError as error:
        print(f"layerscope: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layerscope: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `layerscope ... --json | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
