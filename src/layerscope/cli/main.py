"""Entry point: ``layerscope COMMAND [options]``. Bad input exits 2 with a one-line message."""

from __future__ import annotations

import argparse
import os
import sys

from layerscope.cli import basic, claims, demo, rerun
from layerscope.cli.common import add_common_options
from layerscope.engine.chunking import parse_budget
from layerscope.errors import LayerscopeError
from layerscope.methods import METHODS, cli_module
from layerscope.results.save import check_target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerscope",
        description="Read, measure and operate on the hidden states of transformer LMs, layer by layer. "
        "Every command runs offline; `layerscope COMMAND --help` explains each one.",
    )
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
    claims.register(adder(None))
    demo.register(adder(None))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run parsed ``args``: ``--save`` is checked first, errors of ours exit 2 with one line."""
    try:
        for option in ("save", "save_items"):  # a bad path or format fails before any model loads
            if getattr(args, option, None):
                check_target(args.save if option == "save" else args.save_items)
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
