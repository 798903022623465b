"""Scale-out on Ray: throughput of `sweep --pairs` with 1 vs 2 workers, and the per-unit overhead.

Every configuration runs the same units (pairs of the shipped set, exact patching of resid_post at
every 10th layer) in one process; workers hold one model replica each with 1 torch thread. The
per-unit scheduling overhead is measured with units that do nothing: (time for N empty units -
time for 1) / (N - 1), on 2 workers.
"""

from __future__ import annotations

import time

import torch

from layerscope.distributed import Unit, run_units
from layerscope.methods.patching.pairs import load_pairs, pair_sweep
from layerscope.testing.units import tiny_spec


def empty_unit(model, unit: Unit) -> list[dict]:
    return []


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_distributed(model, n_pairs: int = 100, layers: str = "0:30:10", log=print) -> list[dict]:
    import ray

    pairs = load_pairs()[:n_pairs]
    spec = {"model": model.name}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = _timed(lambda: pair_sweep(model, pairs, layers=layers, progress=False))
        times = {}
        for workers in (1, 2):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            try:
                # the first unit pays for starting the workers and loading their models: time the rest
                pair_sweep(model, pairs[:workers], layers=layers, workers=workers, model_spec=spec, progress=False)
                times[workers] = _timed(
                    lambda w=workers: pair_sweep(model, pairs, layers=layers, workers=w, model_spec=spec,
                                                 progress=False)  # fmt: skip
                )
                if workers == 2:
                    one = _timed(lambda: run_units([Unit(0)], empty_unit, tiny_spec(), workers=2, progress=False))
                    many = _timed(
                        lambda: run_units([Unit(i) for i in range(201)], empty_unit, tiny_spec(), workers=2,
                                          progress=False)  # fmt: skip
                    )
            finally:
                ray.shutdown()
    finally:
        torch.set_num_threads(threads)
    row = {
        "benchmark": f"sweep --pairs ({n_pairs} pairs, layers {layers})",
        "in_process_s": local,
        "workers1_s": times[1],
        "workers2_s": times[2],
        "speedup_2_vs_1": times[1] / times[2],
        "speedup_2_vs_in_process": local / times[2],
        "overhead_ms_per_unit": 1000 * (many - one) / 200,
    }
    log(f"# {row}")
    return [row]
