"""Scale-out on Ray: throughput of `sweep --pairs` and `eval attributes` with 1 vs 2 workers, and
the per-unit overhead.

Every configuration runs the same units (pairs of the shipped set, exact patching of resid_post at
every 10th layer; relations of the shipped set, one unit each) in one process, then on 1 and 2 Ray
workers; workers hold one model replica each with 1 torch thread. The
per-unit scheduling overhead is measured with units that do nothing: (time for N empty units -
time for 1) / (N - 1), on 2 workers.
"""

from __future__ import annotations

import time

import torch

from layerscope.distributed import Unit, run_units
from layerscope.methods.patching.pairs import load_pairs, pair_sweep
from layerscope.methods.patchscopes.attributes import eval_attributes
from layerscope.testing.units import tiny_spec


def empty_unit(model, unit: Unit) -> list[dict]:
    return []


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


#: ten relations: five units per worker, so the two workers get equal work
ATTRIBUTE_RELATIONS = [
    "country_capital", "country_currency", "country_language", "element_symbol", "dish_country",
    "landmark_country", "person_occupation", "city_country", "animal_class", "country_continent",
]  # fmt: skip


def bench_distributed(model, n_pairs: int = 100, layers: str = "0:30:10", log=print) -> list[dict]:
    from layerscope.datasets import relation_names

    relations = [r for r in ATTRIBUTE_RELATIONS if r in relation_names()]
    attributes = dict(limit=3, source_layers="::10", target_layers="::10", max_new_tokens=10, probe=False)
    pairs = load_pairs()[:n_pairs]
    workloads = {
        f"sweep --pairs ({n_pairs} pairs, layers {layers})": (
            lambda **kw: pair_sweep(model, pairs, layers=layers, progress=False, **kw),
            lambda **kw: pair_sweep(model, pairs[: kw["workers"]], layers=layers, progress=False, **kw),
        ),
        f"eval attributes ({len(relations)} relations, 3 subjects, layers ::10)": (
            lambda **kw: eval_attributes(model, relations, **attributes, **kw),
            lambda **kw: eval_attributes(model, relations[: kw["workers"]], **attributes, **kw),
        ),
    }
    return [_bench_workload(name, run, warm, log) for name, (run, warm) in workloads.items()]


def _bench_workload(name: str, run, warm, log) -> dict:
    import ray

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = _timed(run)
        times = {}
        for workers in (1, 2):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            try:
                warm(workers=workers)  # starting the workers and loading their models is not timed
                times[workers] = _timed(lambda w=workers: run(workers=w))
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
        "benchmark": name,
        "in_process_s": local,
        "workers1_s": times[1],
        "workers2_s": times[2],
        "speedup_2_vs_1": times[1] / times[2],
        "speedup_2_vs_in_process": local / times[2],
        "overhead_ms_per_unit": 1000 * (many - one) / 200,
    }
    log(f"# {row}")
    return row
