"""Attribution patching vs exact patching on the same grid: the speed ratio and how well it agrees.

For each pair: the exact sweep (layerscope's fastest, at no memory limit) and attribution patching
(one clean forward, one corrupt forward with autograd, one backward) over the whole (layer,
position) grid of ``resid_post``, interleaved, medians over rounds; then the Pearson correlation of
the two grids and the largest disagreement, for every site (attribution gives all four sites
from one backward; exact patching runs once per site, outside the timing).
"""

from __future__ import annotations

import time
from statistics import median

from patching import ANSWER, PAIRS, WRONG

from layerscope.methods.patching import activation_patching, attribution_patching, compare_with_exact


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_attribution(model, pairs=PAIRS, rounds: int = 3, steps: int = 8, log=print) -> list[dict]:
    rows = []
    for name, (clean, corrupt) in pairs.items():
        exact_t, attr_t, ig_t = [], [], []
        for _ in range(rounds):
            exact_t.append(
                _time(lambda: activation_patching(model, clean, corrupt, ANSWER, WRONG, progress=False))  # noqa: B023
            )
            attr_t.append(_time(lambda: attribution_patching(model, clean, corrupt, ANSWER, WRONG)))  # noqa: B023
            ig_t.append(
                _time(lambda: attribution_patching(model, clean, corrupt, ANSWER, WRONG, steps=steps))  # noqa: B023
            )
        # every site on the short pair; resid_post on the long ones (exact patching per site is the slow part)
        sites = "all" if name.startswith("eiffel") else "resid_post"
        _, agreement = compare_with_exact(model, clean, corrupt, ANSWER, WRONG, sites=sites, progress=False)
        _, agreement_ig = compare_with_exact(
            model, clean, corrupt, ANSWER, WRONG, sites="resid_post", steps=steps, progress=False
        )
        row = {
            "benchmark": f"attribution, {name}",
            "exact_s": median(exact_t),
            "attribution_s": median(attr_t),
            "speedup": median(exact_t) / median(attr_t),
            f"ig{steps}_s": median(ig_t),
            f"ig{steps}_speedup": median(exact_t) / median(ig_t),
            f"pearson_ig{steps}_resid_post": float(agreement_ig["pearson"].iloc[0]),
        }
        for r in agreement.itertuples():
            row[f"pearson_{r.site}"] = r.pearson
            row[f"worst_{r.site}"] = f"{r.max_abs_error:.2f} @ L{r.worst_layer} p{r.worst_position} {r.worst_token!r}"
        log(f"# {row}")
        rows.append(row)
    return rows
