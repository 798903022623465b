"""``explore``: the local web app on the loaded model (see :mod:`layerscope.explore`)."""

from __future__ import annotations

import argparse

from layerscope.cli.common import load_model, status
from layerscope.errors import LayerscopeError


def cmd_explore(args: argparse.Namespace) -> None:
    from layerscope.explore.server import LOCAL_HOSTS, Explorer

    if not 0 <= args.port <= 65535:
        raise LayerscopeError(f"--port must be 0..65535, got {args.port}")
    model = load_model(args)
    try:
        app = Explorer([model], host=args.host, port=args.port)
    except OSError as error:
        raise LayerscopeError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    if args.host not in LOCAL_HOSTS:
        status(f"listening on {args.host}: every request needs the token (it is in the URL below)")
    print(app.url, flush=True)  # stdout: the one result of this command
    status("Ctrl-C stops the server")
    try:
        app.serve_forever()
    except KeyboardInterrupt:
        status("stopped")
    finally:
        app.close()


def register(command) -> None:
    p = command(
        "explore",
        cmd_explore,
        "a local web app: lens grid, decoded states, patching heatmap, attend switch, layer metrics",
        "Start a web app on the loaded model and print its URL. Every view has a link that reproduces it,\n"
        "its rows as JSON/CSV, and the equivalent layerscope command line. Binds 127.0.0.1 by default;\n"
        "any other --host requires the token printed in the URL.\n\n"
        "example:  layerscope explore   # then open http://127.0.0.1:8765/",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free port)")
