"""Scale-out on Ray: throughput of `sweep --pairs` and `eval attributes` with 1 vs 2 workers, and
the per-unit overhead.

Every configuration runs the same units (pairs of the shipped set, exact patching of resid_post at
every 10th layer; relations of the shipped set, one unit each) in one process, then on 1 and 2 Ray
workers; workers hold one model replica each with 1 torch thread. The
per-unit scheduling overhead is measured with 200 units that do nothing on 2 workers: the wall time
once the workers are up, per unit (what the driver and Ray add to every unit).
"""

from __future__ import annotations

import torch

from layerscope.distributed import Unit, run_units
from layerscope.methods.patching.pairs import load_pairs
from layerscope.testing.units import tiny_spec


def empty_unit(model, unit: Unit) -> list[dict]:
    return []


#: ten relations: five units per worker, so the two workers get equal work
ATTRIBUTE_RELATIONS = [
    "country_capital", "country_currency", "country_language", "element_symbol", "dish_country",
    "landmark_country", "person_occupation", "city_country", "animal_class", "country_continent",
]  # fmt: skip


def bench_distributed(model, n_pairs: int = 100, layers: str = "0:30:10", log=print) -> list[dict]:
    """The units of ``sweep --pairs`` and ``eval attributes``, in one process and on 1 and 2 workers."""
    from layerscope.datasets import relation_names
    from layerscope.methods.patching.pairs import pair_unit, usable
    from layerscope.methods.patchscopes.attributes import relation_unit

    pairs = load_pairs()[:n_pairs]
    keep, _ = usable(model, pairs)
    options = {"site": "resid_post", "layers": layers, "batch_budget": None}
    pair_units = [Unit(i, {"pair": pairs[i], "options": options}) for i in keep]
    relations = [r for r in ATTRIBUTE_RELATIONS if r in relation_names()]
    payload = {"limit": 3, "seed": 0, "recipe": "paper", "source_layers": [0, 10, 20],
               "target_layers": [0, 10, 20], "max_new_tokens": 10, "batch_budget": "512MB", "probe": False,
               "folds": 3, "progress": False}  # fmt: skip
    workloads = {
        f"sweep --pairs ({len(pair_units)} pairs, layers {layers})": (pair_units, pair_unit),
        f"eval attributes ({len(relations)} relations, 3 subjects, layers 0,10,20)": (
            [Unit(r, payload) for r in relations],
            relation_unit,
        ),
    }
    return [_bench_workload(name, model, units, work, log) for name, (units, work) in workloads.items()]


def _bench_workload(name: str, model, units: list[Unit], work, log) -> dict:
    """End to end (workers started, models loaded) and steady state (the units once the workers are up)."""
    import ray

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timings: dict[str | int, dict] = {"local": {}}
    try:
        run_units(units, work, model, progress=False, timings=timings["local"])
        for workers in (1, 2):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            try:
                timings[workers] = {}
                run_units(units, work, model, workers=workers, progress=False, timings=timings[workers])
                if workers == 2:  # units that do nothing: what the driver and Ray add per unit
                    empty: dict = {}
                    run_units([Unit(i) for i in range(200)], empty_unit, tiny_spec(), workers=2, progress=False,
                              timings=empty)  # fmt: skip
            finally:
                ray.shutdown()
    finally:
        torch.set_num_threads(threads)
    local, w1, w2 = (timings[k]["units_s"] for k in ("local", 1, 2))
    total = {k: timings[k]["startup_s"] + timings[k]["units_s"] for k in (1, 2)}
    row = {
        "benchmark": name,
        "units": len(units),
        "in_process_s": local,
        "workers1_s": w1,
        "workers2_s": w2,
        "speedup_2_vs_1": w1 / w2,
        "speedup_2_vs_in_process": local / w2,
        "startup_1_s": timings[1]["startup_s"],
        "startup_2_s": timings[2]["startup_s"],
        "end_to_end_speedup_2_vs_1": total[1] / total[2],
        "overhead_ms_per_unit": 1000 * empty["units_s"] / 200,  # wall time per empty unit, 2 workers
    }
    log(f"# {row}")
    return row
