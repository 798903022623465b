"""One forward pass with interventions, captures, variants, a start layer, loops and prefix reuse."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from layerscope.engine.batch import Batch, tokenize
from layerscope.engine.fallback import run_by_length, run_by_start
from layerscope.engine.forward import forward
from layerscope.engine.interventions import SITES, Intervention, resolve_layers
from layerscope.engine.plan import compile_plan
from layerscope.engine.positions import PositionSpec
from layerscope.engine.result import RunResult
from layerscope.engine.session import Loop
from layerscope.engine.stagger import Stagger
from layerscope.errors import InterventionError, SiteError

CaptureSpec = str | tuple[str, object] | Sequence[str | tuple[str, object]]


def parse_capture(capture: CaptureSpec | None, n_layers: int) -> dict[str, set[int]]:
    """``"resid_post"`` / ``("resid_post", "0:5")`` / a list of those -> ``{site: {layers}}``."""
    if capture is None:
        return {}
    items = [capture] if isinstance(capture, str | tuple) else list(capture)
    spec: dict[str, set[int]] = {}
    for item in items:
        site, layers = (item, "all") if isinstance(item, str) else item
        if site not in SITES:
            raise SiteError(f"unknown site {site!r}: use one of {', '.join(SITES)}")
        spec.setdefault(site, set()).update(resolve_layers(layers, n_layers))
    return spec


def expand_variants(
    batch: Batch, interventions: Sequence[Intervention], variants: Sequence[Sequence[Intervention]] | None
) -> tuple[Batch, list[Intervention], int]:
    """Repeat each prompt once per variant; variant v of prompt p is row ``p * V + v``."""
    if variants is None:
        return batch, list(interventions), 1
    n_variants = len(variants)
    if n_variants == 0:
        raise InterventionError("variants is empty: pass at least one list of interventions (it may be [])")
    expanded = batch.repeat(n_variants)
    ivs = list(interventions)
    for v, variant in enumerate(variants):
        rows = [p * n_variants + v for p in range(batch.size)]
        ivs.extend(iv.on_rows(rows) for iv in variant)
    return expanded, ivs, n_variants


def run(
    model,
    prompts: str | Sequence[str] | Batch,
    *,
    interventions: Sequence[Intervention] = (),
    variants: Sequence[Sequence[Intervention]] | None = None,
    capture: CaptureSpec | None = None,
    capture_positions: PositionSpec | None = None,
    start_layer: int | Sequence[int] = 0,
    start_states: torch.Tensor | dict[int, torch.Tensor] | None = None,
    loop: Loop | tuple[int, int, int] | None = None,
    logits: str | None = "all",
    prefix: RunResult | None = None,
    prefix_length: int = 0,
    keep_cache: bool = False,
    grad: bool = False,
    _fallback: bool = True,
) -> RunResult:
    """One forward pass of ``model`` (``Model.run``) with interventions.

    Args:
        prompts: a string, a list of strings, or a :class:`Batch`.
        interventions: applied to every row.
        variants: V lists of interventions: each prompt is repeated V times in one batch,
            row ``p * V + v`` getting ``variants[v]``.
        capture: sites to keep: ``"resid_post"`` (all layers), ``("resid_pre", "3:7")``, or a list.
        capture_positions: keep only these positions (e.g. ``"last"``) to save memory.
        start_layer, start_states: run blocks ``l..L-1`` from given ``resid_pre[l]`` states
            ``[B or 1, T, D]``; lower blocks are skipped. ``start_layer`` may also be a list,
            one start layer per row (sorted; variants of one unpadded prompt): each row joins
            the batch at its own block (:mod:`layerscope.engine.stagger`), and ``start_states``
            holds the rows that start above 0 (``[n, T, D]``) or one state per start layer
            (``{layer: [1, T, D]}``).
        loop: ``(a, b, n)``: blocks ``a..b-1`` run n times; states are keyed by iteration.
        logits: ``"all"``, ``"last"`` (only the last position is unembedded: cheaper, but the
            unembedding matmul then has another shape, so fp32 rounding differs by ~1e-6
            relative between batch sizes) or None.
        prefix, prefix_length: reuse the KV cache of ``prefix`` (a run with ``keep_cache=True``)
            for the first ``prefix_length`` tokens; only the rest is computed.
        keep_cache: return the KV cache (``result.past_key_values``).
        grad: run with autograd: logits, captured states and the interventions' values carry
            gradients (``result.grad(site, layer)`` after ``backward()``); default off.
    Returns:
        :class:`layerscope.engine.result.RunResult`.

    Where the self-check found that a shortcut does not hold for this model, the exact path is
    taken instead (``_fallback=False`` turns that off: the self-check tests the shortcuts): per-row
    start layers run one batch per start layer, and padded prompts run in groups of equal length.
    """
    batch = prompts if isinstance(prompts, Batch) else tokenize(model.tokenizer, prompts, model.device)
    n_prompts = batch.size
    model.check_length(batch.length)
    batch, ivs, n_variants = expand_variants(batch, interventions, variants)
    n_layers = model.n_layers
    caps = model.caps
    if prefix is not None and _fallback:
        caps.require("prefix_reuse", type(model.hf).__name__)
    if not isinstance(start_layer, int):
        if _fallback and not caps.staggered:
            caps.require("start_layer", type(model.hf).__name__)
            return run_by_start(
                model, batch, ivs, n_variants, list(start_layer), start_states, capture, capture_positions, logits,
                prefix, prefix_length, grad,
            )  # fmt: skip
        return _run_staggered(
            model, batch, ivs, n_prompts, n_variants, list(start_layer), start_states, loop, capture,
            capture_positions, logits, prefix, prefix_length, keep_cache, grad,
        )  # fmt: skip
    if _fallback and any(batch.pad) and caps.padding == "groups":
        if keep_cache:
            raise InterventionError(
                f"{type(model.hf).__name__} cannot run padded prompts in one batch (see model.check_report()), "
                "so it keeps no cache of a padded batch: run prompts of equal length"
            )
        return run_by_length(
            model, batch, ivs, n_variants, start_layer, start_states, loop, capture, capture_positions, logits, grad,
        )  # fmt: skip
    if start_layer and _fallback:
        caps.require("start_layer", type(model.hf).__name__)
    if loop is not None and not isinstance(loop, Loop):
        loop = Loop(*loop)
    if loop is not None:
        _check_loop(loop, n_layers)
        if start_layer > loop.start:
            raise InterventionError("start_layer must not be inside or above a looped block")
    offset = 0
    if prefix is not None:
        offset = _check_prefix(prefix, prefix_length, batch)
    plan = compile_plan(ivs, batch, n_layers, model.d_model, offset, model.available_sites, loop=loop)
    capture_spec = parse_capture(capture, n_layers)
    capture_index = None
    if capture_positions is not None:
        capture_index = _capture_index(batch, capture_positions, offset)
    start_layer = resolve_layers(start_layer, n_layers)[0] if start_layer else 0
    start_states = _check_start(start_states, start_layer, batch, offset, model.d_model)
    below = sorted({layer for _, layer in plan.ops if layer < start_layer})
    if below:
        raise InterventionError(
            f"interventions at layer(s) {below} lie below start_layer={start_layer}: those blocks do not run, "
            "so they would silently do nothing; start lower or move them up"
        )
    if start_layer and any(l < start_layer for ls in capture_spec.values() for l in ls):
        raise SiteError(f"layers below start_layer={start_layer} are not computed and cannot be captured")

    inputs, cache = _model_inputs(batch, prefix, offset)
    out, captured = forward(
        model, inputs, plan, batch.attention_mask[:, offset:], capture=capture_spec, cache=cache,
        keep_cache=keep_cache and loop is None, logits=logits, start_layer=start_layer, start_states=start_states,
        loop=loop, capture_index=capture_index, grad=grad,
    )  # fmt: skip
    return RunResult(
        n_layers=model.n_layers,
        batch=batch,
        logits=out.logits,
        cache=captured,
        past_key_values=out.cache if keep_cache else None,
        offset=offset,
        n_variants=n_variants,
        capture_positions=capture_positions,
    )


def _run_staggered(
    model, batch, ivs, n_prompts, n_variants, starts, start_states, loop, capture, capture_positions, logits,
    prefix, prefix_length, keep_cache, grad=False,
) -> RunResult:  # fmt: skip
    """``run`` with a start layer per row (see :mod:`layerscope.engine.stagger`): rows of one prompt
    join the batch at their start block; the model itself runs on one row."""
    n_layers = model.n_layers
    if n_prompts != 1 or any(batch.pad):
        raise InterventionError("per-row start layers need one unpadded prompt (its variants are the rows)")
    if len(starts) != batch.size:
        raise InterventionError(f"start_layer lists {len(starts)} layers for {batch.size} rows: give one per row")
    if loop is not None or keep_cache:
        raise InterventionError("per-row start layers cannot be combined with loops or keep_cache")
    starts = [resolve_layers(s, n_layers)[0] for s in starts]
    offset = _check_prefix(prefix, prefix_length, batch) if prefix is not None else 0
    plan = compile_plan(ivs, batch, n_layers, model.d_model, offset, model.available_sites)
    low = min(starts)
    for (site, layer), ops in plan.ops.items():
        for op in ops:
            first = min(starts[r] for r in op.rows.tolist())
            if layer < first:
                raise InterventionError(
                    f"an intervention at {site}[{layer}] acts on a row that starts at layer {first}: "
                    "a row's interventions must be at or above its start layer"
                )
    capture_spec = parse_capture(capture, n_layers)
    if any(l < low for ls in capture_spec.values() for l in ls):
        raise SiteError(f"layers below the lowest start layer ({low}) are not computed and cannot be captured")
    capture_index = None if capture_positions is None else _capture_index(batch, capture_positions, offset)
    expected = (batch.length - offset, model.d_model)
    given = start_states.values() if isinstance(start_states, dict) else [start_states]
    for states in given:
        if states is not None and (states.dim() != 3 or tuple(states.shape[1:]) != expected):
            raise InterventionError(
                f"start_states has shape {tuple(states.shape)}, expected [rows starting above 0 (or 1 per "
                f"start layer), {expected[0]}, {expected[1]}]"
            )

    inputs, cache = _model_inputs(batch.select([0]), prefix, offset)  # the model itself runs on one row
    stagger = Stagger(starts, start_states, n_layers, cache)
    # the model's own head sees one row (logits=None: skipped where it can be): ours reads every row
    _, captured = forward(
        model, inputs, plan, batch.attention_mask[:, offset:], capture=capture_spec, cache=cache,
        keep_cache=cache is not None, logits=None, capture_index=capture_index, stagger=stagger, grad=grad,
    )  # fmt: skip
    with torch.set_grad_enabled(grad):
        out_logits = None
        if logits is not None and model.adapter.unembed is not None:
            final = stagger.final if logits == "all" else stagger.final[:, -1:]
            out_logits = model.adapter.unembed_states(final)
    return RunResult(
        n_layers=model.n_layers,
        batch=batch,
        logits=out_logits,
        cache=captured,
        offset=offset,
        n_variants=n_variants,
        capture_positions=capture_positions,
    )


def _model_inputs(batch: Batch, prefix: RunResult | None, offset: int) -> tuple[dict, object | None]:
    """The HF forward's inputs and cache; with a reused prefix, only the tokens after it, their
    positions and a private copy of the prefix's KV cache repeated over the batch."""
    inputs = batch.model_inputs()
    if not offset:
        return inputs, None
    inputs = {k: v[:, offset:] if k != "attention_mask" else v for k, v in inputs.items()}
    positions = torch.arange(offset, batch.length, device=batch.input_ids.device)
    inputs["position_ids"] = positions.expand(batch.size, -1)
    return inputs, _expand_cache(prefix.past_key_values, offset, batch.size)


def _check_loop(loop: Loop, n_layers: int) -> None:
    if not (0 <= loop.start < loop.stop <= n_layers) or loop.times < 1:
        raise InterventionError(
            f"invalid loop block [{loop.start}, {loop.stop}) x {loop.times}: need 0 <= a < b <= {n_layers} "
            "and at least one iteration"
        )


def _check_prefix(prefix: RunResult, length: int, batch: Batch) -> int:
    if prefix.past_key_values is None:
        raise InterventionError("the prefix run kept no KV cache: run it with keep_cache=True")
    if any(batch.pad):
        raise InterventionError("prefix reuse needs unpadded rows (variants of one prompt)")
    if not 0 < length < batch.length:
        raise InterventionError(f"prefix_length must be in 1..{batch.length - 1}, got {length}")
    if not torch.equal(prefix.batch.input_ids[0, :length], batch.input_ids[0, :length]):
        raise InterventionError("the prefix run's tokens differ from this prompt's first prefix_length tokens")
    return length


def _expand_cache(cache, length: int, batch_size: int):
    """A private copy of ``cache`` cropped to ``length`` positions and repeated over the batch."""
    cache = _private_copy(cache)
    extra = cache.get_seq_length() - length
    if extra > 0:
        try:
            cache.crop(-extra)  # a negative count removes that many trailing positions (transformers >= 5)
        except RuntimeError as err:  # a sliding-window layer has already dropped the prefix's early positions
            raise InterventionError(
                f"this model's KV cache cannot be cut back to the first {length} positions ({err}); "
                f"run the prefix on its first {length} tokens only (keep_cache=True) and reuse that run"
            ) from None
    if batch_size > 1:
        cache.batch_repeat_interleave(batch_size)
    return cache


def _private_copy(cache):
    """A copy of ``cache`` that the next forward may extend without touching ``cache``.

    Dynamic KV layers never write into their tensors (an update concatenates, a crop slices, a
    repeat makes new ones: each rebinds the layer's attribute), so copying the layer objects is
    enough, and much cheaper than a deep copy of every tensor and attribute (5% of a short sweep).
    Any other cache (static layers write in place) is deep-copied.
    """
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or type(cache).__name__ != "DynamicCache" or not all(type(l) is DynamicLayer for l in layers):
        return copy.deepcopy(cache)
    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in layers]
    return out


def _capture_index(batch: Batch, spec: PositionSpec, offset: int) -> torch.Tensor:
    rows = [[p - offset for p in batch.positions(spec, r)] for r in range(batch.size)]
    if len({len(r) for r in rows}) != 1:
        raise SiteError(f"capture_positions={spec!r} selects a different number of tokens per prompt")
    if any(p < 0 for r in rows for p in r):
        raise SiteError("capture_positions fall inside the reused KV prefix")
    return torch.tensor(rows, device=batch.input_ids.device)


def _check_start(states, start_layer: int, batch: Batch, offset: int, d_model: int):
    if states is None:
        if start_layer:
            raise InterventionError(f"start_layer={start_layer} needs start_states (resid_pre[{start_layer}])")
        return None
    expected = (batch.size, batch.length - offset, d_model)
    if states.dim() != 3 or states.shape[1:] != expected[1:] or states.shape[0] not in (1, batch.size):
        raise InterventionError(
            f"start_states has shape {tuple(states.shape)}, expected {expected} (or batch 1): "
            "resid_pre states of the same prompts, as captured from a run of this model"
        )
    return states.expand(batch.size, -1, -1)
