"""Attribution patching: the whole (layer, position) grid from one backward pass, a linear estimate.

Exact activation patching asks, for every site ``h = site[l]`` at position p, what the metric
``m = logit(answer) - logit(wrong)`` of the corrupt run becomes when ``h`` takes its clean value.
Attribution patching (Nanda 2023; Syed et al. 2023) answers with the first-order Taylor term at
the corrupt run:

    m(patched) ~ m(corrupt) + (h_clean - h_corrupt) . dm/dh |corrupt

one clean forward (the clean states), one corrupt forward with autograd and one backward give it
for every layer, position and site at once.

The linear estimate fails where the metric is far from linear in one state: at the last position
(the state the metric reads almost directly, through a softmax-free but norm-ed head: the norm
makes it non-linear in the state's scale) and in early layers (the patch's effect passes through
every later block's non-linearities). **Integrated gradients** (``steps=N``) average the gradient
along a path from the corrupt to the clean run instead of taking it at the corrupt end: here the
path interpolates the *input embeddings* (``resid_pre[0]``) at N midpoints, the gradient at every
site is averaged over the path, and multiplied by that site's clean - corrupt difference (as in
EAP-IG, Hanna et al. 2024). It costs one batched forward and one backward of N rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from layerscope.engine.interventions import LayerSpec, patch, resolve_layers
from layerscope.engine.positions import PositionSpec
from layerscope.errors import LayerscopeError
from layerscope.methods.patching.api import PATCH_SITES, activation_patching, prepare_pair
from layerscope.results.contract import tidy


def attribution_patching(
    model,
    clean: str,
    corrupt: str,
    answer: str,
    wrong: str,
    *,
    sites: str | Sequence[str] = "resid_post",
    layers: LayerSpec = "all",
    positions: PositionSpec = "all",
    steps: int | None = None,
) -> pd.DataFrame:
    """The attribution-patching estimate of every cell of the patching grid, for every site.

    Args:
        clean, corrupt, answer, wrong: as in :func:`activation_patching`.
        sites: one site or several (``"all"``: every site the model offers); one backward serves all.
        steps: None = attribution patching (the gradient at the corrupt run); N = integrated
            gradients over N points of the corrupt -> clean path of the input embeddings.
    Returns:
        One row per (site, layer, position): ``model``, ``method`` (``patching``), ``estimator``
        (``attribution`` or ``integrated_gradients``), ``site``, ``layer``, ``position``, ``token``,
        ``value`` (the estimated metric after the patch: ``corrupt_value + attribution``),
        ``attribution`` (the estimated change), and the baselines ``clean_value``, ``corrupt_value``,
        ``answer``, ``wrong``, ``steps``.
    """
    site_list = _sites(model, sites)
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise LayerscopeError(f"steps must be a positive integer (the points of the integration path), got {steps!r}")
    answer_id, wrong_id, source, target = prepare_pair(model, clean, corrupt, answer, wrong, site_list)
    n_layers = model.n_layers
    layer_list = sorted(set(resolve_layers(layers, n_layers)))
    position_list = sorted(set(target.positions(positions, 0)))
    capture = [(site, layer_list) for site in site_list]

    with torch.no_grad():
        src = model.run(source, capture=[*capture, ("resid_pre", [0])], logits="last")
    clean_value = float(src.last_logits[0, answer_id] - src.last_logits[0, wrong_id])
    if steps is None:
        run = model.run(target, capture=capture, logits="last", grad=True)
        metric = run.last_logits[:, answer_id] - run.last_logits[:, wrong_id]  # [1]
        corrupt_value = float(metric[0].detach())
    else:
        with torch.no_grad():
            plain = model.run(target, capture=("resid_pre", [0]), logits="last")
        corrupt_value = float(plain.last_logits[0, answer_id] - plain.last_logits[0, wrong_id])
        e_corrupt, e_clean = plain.get("resid_pre", 0)[0], src.get("resid_pre", 0)[0]  # [T, D]
        alphas = [(k + 0.5) / steps for k in range(steps)]  # midpoints of the path
        variants = [[patch("resid_pre", 0, "all", e_corrupt + a * (e_clean - e_corrupt))] for a in alphas]
        run = model.run(target, variants=variants, capture=capture, logits="last", grad=True)
        metric = run.last_logits[:, answer_id] - run.last_logits[:, wrong_id]  # [N]
    # only the states' gradients are asked for: autograd then skips every weight gradient
    keys = [(site, layer) for site in site_list for layer in layer_list]
    states = [run.get(site, layer) for site, layer in keys]
    grads = torch.autograd.grad(metric.sum(), states, allow_unused=True)  # rows are independent
    grad_of = {key: torch.zeros_like(s) if g is None else g for key, s, g in zip(keys, states, grads, strict=True)}

    if steps is not None:
        with torch.no_grad():  # the corrupt run's own states: the path's start, not its midpoints
            base = model.run(target, capture=capture, logits=None)
    tokens = target.prompts[0].tokens
    rows = []
    for site in site_list:
        for layer in layer_list:
            grad = grad_of[(site, layer)].mean(0)  # [T, D]: averaged over the path (one row without it)
            corrupt_states = (run if steps is None else base).get(site, layer)[0]
            delta = src.get(site, layer)[0] - corrupt_states.detach()  # [T, D]
            attribution = (delta * grad).sum(-1)  # [T]
            for p in position_list:
                value = float(attribution[p])
                rows.append(
                    {"site": site, "layer": layer, "position": p, "token": tokens[p],
                     "value": corrupt_value + value, "attribution": value}
                )  # fmt: skip
    table = pd.DataFrame(rows, columns=["site", "layer", "position", "token", "value", "attribution"])
    estimator = "attribution" if steps is None else "integrated_gradients"
    table.insert(0, "estimator", estimator)
    return tidy(
        table, model=model, method="patching", answer=answer, wrong=wrong, clean_value=clean_value,
        corrupt_value=corrupt_value, steps=steps or 0,
    )  # fmt: skip


def compare_with_exact(
    model,
    clean: str,
    corrupt: str,
    answer: str,
    wrong: str,
    *,
    sites: str | Sequence[str] = "resid_post",
    layers: LayerSpec = "all",
    positions: PositionSpec = "all",
    steps: int | None = None,
    batch_budget: str | int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The estimate beside exact patching on the same grid.

    Returns:
        ``(cells, agreement)``: ``cells`` are the estimate's rows with ``exact`` (the exact metric
        after the patch) and ``error`` (estimate - exact) added; ``agreement`` has one row per site:
        ``pearson`` (correlation of estimate and exact over the grid), ``max_abs_error`` and where
        it is (``worst_layer``, ``worst_position``, ``worst_token``).
    """
    estimate = attribution_patching(
        model, clean, corrupt, answer, wrong, sites=sites, layers=layers, positions=positions, steps=steps
    )
    exact = pd.concat(
        [
            activation_patching(
                model, clean, corrupt, answer, wrong, site=site, layers=layers, positions=positions,
                batch_budget=batch_budget, progress=progress,
            )  # fmt: skip
            for site in estimate["site"].unique()
        ]
    )
    keys = ["site", "layer", "position"]
    cells = estimate.merge(exact[[*keys, "value"]].rename(columns={"value": "exact"}), on=keys)
    cells["error"] = cells["value"] - cells["exact"]
    rows = []
    for site, group in cells.groupby("site", sort=False):
        worst = group.loc[group["error"].abs().idxmax()]
        pearson = float(group["value"].corr(group["exact"])) if len(group) > 1 else float("nan")
        rows.append(
            {"site": site, "estimator": worst["estimator"], "pearson": pearson,
             "max_abs_error": float(abs(worst["error"])), "worst_layer": int(worst["layer"]),
             "worst_position": int(worst["position"]), "worst_token": worst["token"], "cells": len(group)}
        )  # fmt: skip
    agreement = tidy(pd.DataFrame(rows), model=model, method="patching")
    return cells, agreement


def _sites(model, sites: str | Sequence[str]) -> list[str]:
    if sites == "all":
        return [s for s in PATCH_SITES if s in model.available_sites]
    return [sites] if isinstance(sites, str) else list(sites)
