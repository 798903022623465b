"""Generation under interventions, batched over prompts and variants.

Two modes: ``"prompt"`` applies the interventions on the prompt pass only (the Patchscopes
recipe), ``"every_step"`` also applies them to every generated token. The KV cache is used
whenever that is exact. It is not when a manipulation targets positions that move as the
sequence grows (``"previous"``, ``"last"``, negative indices) at every step, or when blocks are
looped (a repeated block would write its cache slot twice): then every step recomputes the
whole sequence, as the *Attend first* authors do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from layerscope.engine.batch import Batch, tokenize
from layerscope.engine.forward import forward
from layerscope.engine.interventions import Intervention
from layerscope.engine.plan import Plan, compile_plan
from layerscope.engine.positions import PromptTokens, is_relative_to_end
from layerscope.engine.run import expand_variants
from layerscope.engine.session import Loop
from layerscope.errors import LayerscopeError

MODES = ("prompt", "every_step")


@dataclass
class Generation:
    """Generated continuations.

    Attributes:
        batch: the prompt batch (row ``p * V + v`` = prompt p, variant v).
        tokens: ``[B, N]`` generated ids (after a row's end-of-sequence token: pad ids).
        texts: decoded continuation per row, cut at end-of-sequence.
        first_logits: ``[B, V]`` next-token logits of the prompt pass (what the prompt predicts).
        used_cache: whether generation used the KV cache (False: recomputed every step).
        step_logits: ``[B, N, V]`` the logits each generated token was chosen from
            (with ``keep_logits=True``; else None).
    """

    batch: Batch
    tokens: torch.Tensor
    texts: list[str]
    first_logits: torch.Tensor
    n_variants: int
    used_cache: bool
    step_logits: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"Generation(rows={self.tokens.shape[0]}, new_tokens={self.tokens.shape[1]}, "
            f"used_cache={self.used_cache}, texts={self.texts[:2]!r}{' ...' if len(self.texts) > 2 else ''})"
        )


def _needs_recompute(ivs: Sequence[Intervention], mode: str, loop: Loop | None) -> bool:
    if loop is not None:
        return True
    return mode == "every_step" and any(is_relative_to_end(iv.positions) for iv in ivs)


def _extend(batch: Batch, new_ids: torch.Tensor, tokenizer) -> Batch:
    """The batch with one more token per row (left padding unchanged)."""
    ones = torch.ones_like(new_ids)
    position_ids = None
    if batch.position_ids is not None:
        position_ids = torch.cat([batch.position_ids, batch.position_ids[:, -1:] + 1], dim=1)
    tokens = tokenizer.convert_ids_to_tokens(new_ids[:, 0].tolist())
    prompts = [
        PromptTokens(p.text, [*p.tokens, t], None if p.spans is None else [*p.spans, (len(p.text), len(p.text))])
        for p, t in zip(batch.prompts, tokens, strict=True)
    ]
    return Batch(
        prompts,
        torch.cat([batch.input_ids, new_ids], dim=1),
        torch.cat([batch.attention_mask, ones], dim=1),
        position_ids,
        batch.pad,
    )


def _sample(
    logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None, top_p: float | None, generator
) -> torch.Tensor:
    """``[B, V]`` logits -> ``[B]`` next ids (greedy, or sampled with temperature/top-k/top-p)."""
    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float() / max(temperature, 1e-6)
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative - sorted_logits.softmax(-1) > top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(remove, float("-inf")))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_options(max_new_tokens, temperature, top_k, top_p, seed) -> None:
    """Sampling options are checked before the model runs, each error naming the option."""
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise LayerscopeError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not -(2**63) <= seed < 2**63:
        raise LayerscopeError(f"seed must be an integer that fits in 64 bits, got {seed!r}")
    if not isinstance(temperature, int | float) or isinstance(temperature, bool) or not temperature > 0:
        raise LayerscopeError(f"temperature must be a number > 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise LayerscopeError(f"top_k must be an integer >= 1 (or None), got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, int | float) or isinstance(top_p, bool) or not 0 < top_p <= 1):
        raise LayerscopeError(f"top_p must be a number in (0, 1] (or None), got {top_p!r}")


def generate(
    model,
    prompts: str | Sequence[str] | Batch,
    *,
    interventions: Sequence[Intervention] = (),
    variants: Sequence[Sequence[Intervention]] | None = None,
    max_new_tokens: int = 20,
    mode: str = "prompt",
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    loop: Loop | tuple[int, int, int] | None = None,
    stop_at_eos: bool = True,
    use_cache: bool | None = None,
    keep_logits: bool = False,
) -> Generation:
    """Generate ``max_new_tokens`` for every prompt x variant in one batch.

    Args:
        mode: ``"prompt"`` (interventions on the prompt pass only) or ``"every_step"``.
        do_sample, temperature, top_k, top_p, seed: sampling (greedy by default; seeded).
        loop: ``(a, b, n)`` to loop blocks a..b-1 n times at every step.
        use_cache: force (True) or forbid (False) the KV cache; by default it is used where exact
            (the self-check at load says where: see ``model.check_report()``).
        keep_logits: also return every step's logits (``Generation.step_logits``).
    """
    if not model.is_causal:
        raise LayerscopeError("generation needs a causal LM; this model is an encoder")
    if mode not in MODES:
        raise LayerscopeError(f"unknown generation mode {mode!r}: use one of {MODES}")
    _check_options(max_new_tokens, temperature, top_k, top_p, seed)
    batch = prompts if isinstance(prompts, Batch) else tokenize(model.tokenizer, prompts, model.device)
    model.check_length(batch.length + max_new_tokens, f"the prompt plus max_new_tokens={max_new_tokens}")
    batch, ivs, n_variants = expand_variants(batch, interventions, variants)
    if any(batch.pad) and model.caps.padding == "groups":  # the model cannot take a padded batch
        return _generate_by_length(
            model, batch, ivs, n_variants, max_new_tokens=max_new_tokens, mode=mode, do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, loop=loop, stop_at_eos=stop_at_eos,
            use_cache=use_cache, keep_logits=keep_logits,
        )  # fmt: skip
    if loop is not None and not isinstance(loop, Loop):
        loop = Loop(*loop)
    recompute = _needs_recompute(ivs, mode, loop)
    if use_cache is True and recompute:
        raise LayerscopeError(
            "these interventions change past positions at every step (or loop blocks): "
            "the KV cache would be wrong; leave use_cache unset"
        )
    caps = model.caps
    # the self-check says whether this model's cache reproduces a recompute (state-space caches that
    # ignore a keyword, models that return none, a mask the model misreads on padded rows)
    cache_exact = caps.cached_decoding and (caps.decode_mask or not any(batch.pad))
    if use_cache is True and not cache_exact:
        raise LayerscopeError(
            f"{type(model.hf).__name__}: {caps.problems.get('cached_decoding', 'its cache needs unpadded rows')}; "
            "leave use_cache unset (every step is then recomputed, exactly)"
        )
    cached = (not recompute and cache_exact) if use_cache is None else use_cache
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed)
    eos = model.tokenizer.eos_token_id
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    prompt_plan = compile_plan(ivs, batch, model.n_layers, model.d_model, 0, model.available_sites, loop=loop)

    finished = torch.zeros(batch.size, dtype=torch.bool, device=model.device)
    generated: list[torch.Tensor] = []
    kept_logits: list[torch.Tensor] = []
    current, past, first_logits = batch, None, None
    with torch.no_grad():
        for step in range(max_new_tokens):
            if step == 0 or not cached:
                plan = prompt_plan
                if step > 0 and mode == "every_step":
                    plan = compile_plan(
                        ivs, current, model.n_layers, model.d_model, 0, model.available_sites, loop=loop
                    )
                inputs = current.model_inputs()
            else:
                offset = current.length - 1
                plan = Plan()
                if mode == "every_step":
                    plan = compile_plan(
                        ivs, current, model.n_layers, model.d_model, offset, model.available_sites, drop_prefix=True
                    )
                inputs = {
                    "input_ids": current.input_ids[:, -1:],
                    "position_ids": (
                        current.position_ids[:, -1:]
                        if current.position_ids is not None
                        else torch.full((current.size, 1), offset, device=model.device)
                    ),
                }
                if caps.decode_mask:
                    inputs["attention_mask"] = current.attention_mask
            offset = 0 if step == 0 or not cached else current.length - 1
            out, _ = forward(
                model, inputs, plan, current.attention_mask[:, offset:], cache=past if step else None,
                keep_cache=cached, logits="last", loop=loop,
            )  # fmt: skip
            logits = out.logits[:, -1]
            past = out.cache if cached else None
            if first_logits is None:
                first_logits = logits
            if keep_logits:
                kept_logits.append(logits)
            next_ids = _sample(logits, do_sample, temperature, top_k, top_p, generator)
            next_ids = torch.where(finished, torch.full_like(next_ids, pad), next_ids)
            generated.append(next_ids)
            if stop_at_eos and eos is not None:
                finished |= next_ids == eos
                if bool(finished.all()):
                    break
            if step + 1 < max_new_tokens:
                current = _extend(current, next_ids.unsqueeze(-1), model.tokenizer)
    tokens = torch.stack(generated, dim=1)
    texts = [_decode(model.tokenizer, row, eos, stop_at_eos) for row in tokens.tolist()]
    step_logits = torch.stack(kept_logits, 1) if keep_logits else None
    return Generation(batch, tokens, texts, first_logits, n_variants, cached, step_logits)


def _generate_by_length(model, batch: Batch, ivs, n_variants: int, **options) -> Generation:
    """Generation for a model that cannot take left padding (RWKV): one unpadded batch per length,
    merged back in row order (rows that stopped early are padded with the pad id)."""
    from layerscope.engine.fallback import _rows_of, length_groups

    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    parts = {}
    for rows, pad, sub in length_groups(batch):
        parts[pad] = (rows, generate(model, sub, interventions=_rows_of(ivs, rows), **options))
    width = max(g.tokens.shape[1] for _, g in parts.values())
    tokens = torch.full((batch.size, width), pad_id, dtype=torch.long, device=model.device)
    first = None
    texts = [""] * batch.size
    steps = None
    for rows, g in parts.values():
        index = torch.tensor(rows, device=model.device)
        tokens[index, : g.tokens.shape[1]] = g.tokens
        if first is None:
            first = g.first_logits.new_zeros(batch.size, g.first_logits.shape[-1])
        first[index] = g.first_logits
        if g.step_logits is not None:
            if steps is None:
                steps = g.step_logits.new_zeros(batch.size, width, g.step_logits.shape[-1])
            steps[index, : g.step_logits.shape[1]] = g.step_logits
        for r, text in zip(rows, g.texts, strict=True):
            texts[r] = text
    used = all(g.used_cache for _, g in parts.values())
    return Generation(batch, tokens, texts, first, n_variants, used, steps)


def _decode(tokenizer, ids: list[int], eos: int | None, stop_at_eos: bool) -> str:
    if stop_at_eos and eos is not None and eos in ids:
        ids = ids[: ids.index(eos)]
    return tokenizer.decode(ids, skip_special_tokens=False)
