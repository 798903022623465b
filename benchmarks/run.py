"""Run the benchmarks on the default model and print a table of ratios (`make bench`).

Every workload compares layerscope with its baseline in the same process, interleaved and repeated;
the table reports medians and their ratios (machines here are shared: absolute times mean little).
Peers (nnsight, TransformerLens) come from the optional extra: ``pip install -e '.[bench]'``.

    python benchmarks/run.py                       # everything, CPU, 1 thread
    python benchmarks/run.py --only patching --rounds 2
    python benchmarks/run.py --only peers_batched  # the peers batched by hand (their best usage)
    python benchmarks/run.py --only scaling        # time and memory vs prompt length and pairs, plots
    python benchmarks/run.py --device cuda         # the same benchmarks on a GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))

from attribution import bench_attribution  # noqa: E402
from capture import bench_capture  # noqa: E402
from distributed import bench_distributed  # noqa: E402
from memory import bench_memory  # noqa: E402
from patching import ANSWER, PAIRS, WRONG, bench_patching  # noqa: E402
from patchscope import bench_patchscope  # noqa: E402
from peers_batched import bench_peers_batched  # noqa: E402
from prompt_entropy import bench_prompt_entropy  # noqa: E402
from scaling import bench_scaling  # noqa: E402

import layerscope as ls  # noqa: E402

BENCHMARKS = (
    "capture",
    "patching",
    "peers_batched",
    "attribution",
    "patchscope",
    "memory",
    "prompt_entropy",
    "distributed",
    "scaling",
)


def versions() -> dict[str, str]:
    found = {}
    for name in ("layerscope", "torch", "transformers", "nnsight", "transformer-lens"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for every tool (default 1: on a shared machine, 2 threads per process "
        "oversubscribe the cores and the thread barriers, not the work, dominate small matmuls)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (default: 3)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}")
    parser.add_argument("--full-grid", action="store_true", help="peers run every patching cell (slow)")
    parser.add_argument(
        "--no-ablations", action="store_true", help="patching: time only the headline setting against the peers"
    )
    parser.add_argument("--save", help="also write the rows and the environment as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}: use {BENCHMARKS}")
    model = ls.load(device=args.device, progress=False)
    env = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": __import__("os").cpu_count(),
        "device": str(model.device) if model.device.type == "cpu" else torch.cuda.get_device_name(model.device),
        "threads": torch.get_num_threads(),
        "model": model.name,
        **versions(),
    }
    log(f"# {env}")
    rows: list[dict] = []
    if "capture" in only:
        rows.append(bench_capture(model, n_prompts=64, repeats=max(args.rounds, 5)))
    if "patching" in only:
        cells = {p: None for p in PAIRS} if args.full_grid else None
        rows += bench_patching(model, peer_cells=cells, rounds=args.rounds, ablations=not args.no_ablations, log=log)
    if "peers_batched" in only:
        rows += bench_peers_batched(model, rounds=args.rounds, sample_chunks=None if args.full_grid else 4, log=log)
    if "attribution" in only:
        rows += bench_attribution(model, rounds=args.rounds, log=log)
    if "patchscope" in only:
        rows.append(bench_patchscope(model, rounds=args.rounds, log=log))
    if "memory" in only:
        rows += bench_memory(model, PAIRS, ANSWER, WRONG, log=log)
    if "distributed" in only:
        rows += bench_distributed(model, log=log)
    if "scaling" in only:  # its own curves; plots under benchmarks/plots
        rows += bench_scaling(model, log=log)
    if "prompt_entropy" in only:
        rows.append(bench_prompt_entropy(model))
    table = pd.DataFrame(rows)
    print("# " + ", ".join(f"{k} {v}" for k, v in env.items()))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.save:
        Path(args.save).write_text(json.dumps({"env": env, "rows": rows}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
