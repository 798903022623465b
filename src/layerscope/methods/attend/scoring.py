"""Score a sweep of variants against each item's answer tokens: accuracy and answer probability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from layerscope.engine.batch import Batch, from_ids
from layerscope.engine.chunking import row_bytes, rows_per_chunk
from layerscope.engine.interventions import Intervention, resolve_layers
from layerscope.engine.sweep import clean_run, sweep_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.attend.tasks import MATCHES, Item

# ---- scoring -----------------------------------------------------------------------------------


@dataclass
class Rows:
    """The prompts an item set is scored on: each item's prompt extended by answer prefixes.

    Attributes:
        batch: ``R`` left-padded rows (token ids; the prompts' texts are only for display).
        prob_token: ``[R]`` the canonical answer's first token (its probability is read at row ``first[i]``).
        first: ``[I]`` row of each item's bare prompt.
        checks: per item, per accepted answer, ``[(row, expected id | None)]``; ``None`` = the
            boundary check (the argmax must not continue the answer's last word).
        answer_ids: per item, per accepted answer, its token ids (for the boundary check).
    """

    batch: Batch
    prob_token: torch.Tensor
    first: torch.Tensor
    checks: list[list[list[tuple[int, int | None]]]]
    answer_ids: list[list[tuple[int, ...]]]

    @property
    def n_items(self) -> int:
        return len(self.checks)


def answer_token_ids(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """``(prompt ids, answer ids)`` with the answer tokenised as it continues the prompt."""
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    full = list(tokenizer(prompt + answer)["input_ids"])
    if len(full) > len(prompt_ids) and full[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, full[len(prompt_ids) :]
    alone = list(tokenizer(answer, add_special_tokens=False)["input_ids"])  # merged across the boundary
    if not alone:
        raise LayerscopeError(f"the answer {answer!r} has no tokens")
    return prompt_ids, alone


def build_rows(model, items: Sequence[Item], match: str = "greedy") -> Rows:
    """Every prompt needed to score ``items`` (see the module doc), deduplicated."""
    if match not in MATCHES:
        raise LayerscopeError(f"unknown match {match!r}: use one of {', '.join(MATCHES)}")
    if not items:
        raise LayerscopeError("no items to score")
    tokenizer = model.tokenizer
    index: dict[tuple, int] = {}
    rows: list[list[int]] = []
    prob_token: list[int] = []

    def row(ids: list[int], token: int) -> int:
        key = (tuple(ids), token)  # items sharing a prompt but not an answer need their own row
        if key not in index:
            index[key] = len(rows)
            rows.append(ids)
            prob_token.append(token)
        return index[key]

    first, checks, answer_ids = [], [], []
    for item in items:
        if not item.answers:
            raise LayerscopeError(f"item {item.prompt!r} has no answer")
        encoded = [answer_token_ids(tokenizer, item.prompt, a) for a in item.answers]
        prompt_ids = encoded[0][0]
        canonical = encoded[0][1][0]
        first.append(row(prompt_ids, canonical))
        item_checks, item_ids = [], []
        for _, ids in encoded:
            if tuple(ids) in item_ids:
                continue
            if match == "first-token":
                item_checks.append([(first[-1], ids[0])])
            else:
                steps: list[tuple[int, int | None]] = [
                    (row(prompt_ids + ids[:t], canonical), ids[t]) for t in range(len(ids))
                ]
                steps.append((row(prompt_ids + ids, canonical), None))
                item_checks.append(steps)
            item_ids.append(tuple(ids))
        checks.append(item_checks)
        answer_ids.append(item_ids)
    texts = [tokenizer.decode(r) for r in rows]
    batch = from_ids(tokenizer, rows, texts, [None] * len(rows), model.device)
    return Rows(batch, torch.tensor(prob_token), torch.tensor(first), checks, answer_ids)


@lru_cache(maxsize=65536)
def _continues_word(tokenizer, answer: tuple[int, ...], next_id: int) -> bool:
    """Whether greedy token ``next_id`` extends the answer's last word (``" Paris"`` + ``"ian"``)."""
    before = tokenizer.decode(list(answer))
    added = tokenizer.decode([*answer, next_id])[len(before) :]
    return bool(added) and added[0].isalnum()


@dataclass
class Scores:
    """Per item: ``correct`` ``[I]`` (bool) and ``answer_prob`` ``[I]``."""

    correct: torch.Tensor
    answer_prob: torch.Tensor


def score(model, rows: Rows, predicted: torch.Tensor, prob: torch.Tensor) -> Scores:
    """Item scores from per-row argmax ``predicted`` ``[R]`` and canonical-token probability ``prob`` ``[R]``."""
    pred = predicted.tolist()
    correct = []
    for checks, ids in zip(rows.checks, rows.answer_ids, strict=True):
        ok = False
        for steps, answer in zip(checks, ids, strict=True):
            if all(
                (pred[r] == want) if want is not None else not _continues_word(model.tokenizer, answer, pred[r])
                for r, want in steps
            ):
                ok = True
                break
        correct.append(ok)
    return Scores(torch.tensor(correct), prob[rows.first].float())


def _reduce(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, vocab]`` logits -> argmax ``[N]`` and the probability of ``tokens`` ``[N]``."""
    logits = logits.float()
    prob = logits.softmax(-1).gather(-1, tokens.to(logits.device).unsqueeze(-1)).squeeze(-1)
    return logits.argmax(-1).cpu(), prob.cpu()


def evaluate(
    model,
    items: Sequence[Item] | Rows,
    layer_variants: dict[int, Sequence[Sequence[Intervention]]],
    *,
    match: str = "greedy",
    batch_budget: str | int | None = None,
    reuse: bool = True,
    progress: bool = False,
    desc: str = "attend",
) -> tuple[Scores, dict[tuple[int, int], Scores]]:
    """Score ``items`` clean and under every variant: ``(clean, {(k, v): scores})``.

    With ``reuse`` (default) this is one :func:`sweep_layers` (clean run once, each k from the clean
    ``resid_pre[k]``); ``reuse=False`` runs the per-k loop of full forward passes that the sweep
    replaces (for checks and timing).
    """
    rows = items if isinstance(items, Rows) else build_rows(model, items, match)
    batch, tokens = rows.batch, rows.prob_token
    layer_variants = {resolve_layers(k, model.n_layers)[0]: list(v) for k, v in layer_variants.items()}
    preds = {
        (k, v): torch.empty(batch.size, dtype=torch.long) for k, vs in layer_variants.items() for v in range(len(vs))
    }
    probs = {key: torch.empty(batch.size) for key in preds}

    def store(k: int, variants: slice, prompts: slice, logits: torch.Tensor) -> None:  # [P', V', vocab]
        for j, v in enumerate(range(variants.start, variants.stop)):
            preds[(k, v)][prompts], probs[(k, v)][prompts] = _reduce(logits[:, j], tokens[prompts])

    if reuse:
        clean = clean_run(model, batch, [k for k in layer_variants if k > 0])
        clean_pred, clean_prob = _reduce(clean.last_logits, tokens)
        for chunk in sweep_layers(
            model, batch, layer_variants, clean=clean, batch_budget=batch_budget, progress=progress, desc=desc
        ):
            store(chunk.layer, chunk.variants, chunk.prompts, chunk.last_logits())
    else:
        per_row = row_bytes(model, batch.length)
        step = rows_per_chunk(batch_budget, per_row, batch.size)
        clean_pred, clean_prob = torch.empty(batch.size, dtype=torch.long), torch.empty(batch.size)
        for start in range(0, batch.size, step):
            part = slice(start, min(start + step, batch.size))
            out = model.run(batch.select(part), logits="last")
            clean_pred[part], clean_prob[part] = _reduce(out.last_logits, tokens[part])
        for k, variants in sorted(layer_variants.items()):
            step = max(1, rows_per_chunk(batch_budget, per_row, batch.size * len(variants)) // len(variants))
            for start in range(0, batch.size, step):
                part = slice(start, min(start + step, batch.size))
                out = model.run(batch.select(part), variants=variants, logits="last")
                store(k, slice(0, len(variants)), part, out.last_logits.view(-1, len(variants), out.logits.shape[-1]))
    clean_scores = score(model, rows, clean_pred, clean_prob)
    return clean_scores, {key: score(model, rows, preds[key], probs[key]) for key in preds}
