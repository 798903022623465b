"""Tokenise prompts into one left-padded batch.

Left padding keeps the last real token of every row at index ``T-1``, which is what batched
generation needs, and explicit ``position_ids`` make each row see the same positions as it would
alone. A single prompt is not padded and gets no explicit ``position_ids``, so its forward pass
is exactly the plain Hugging Face call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from layerscope.engine.positions import PositionSpec, PromptTokens, resolve
from layerscope.errors import LayerscopeError


@dataclass
class Batch:
    """A left-padded batch of prompts.

    Attributes:
        prompts: per row, the text, tokens and character spans.
        input_ids: ``[B, T]`` token ids (pad on the left).
        attention_mask: ``[B, T]`` 1 for real tokens.
        position_ids: ``[B, T]`` or None when no row is padded.
        pad: per row, the number of left pad tokens.
    """

    prompts: list[PromptTokens]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None
    pad: list[int]

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    def positions(self, spec: PositionSpec, row: int) -> list[int]:
        """Resolve a position spec for ``row`` to indices into the padded ``[T]`` axis."""
        return [self.pad[row] + p for p in resolve(spec, self.prompts[row])]

    def repeat(self, times: int) -> Batch:
        """Each row repeated ``times`` times, row-major (row 0 x times, then row 1 ...)."""
        idx = torch.arange(self.size).repeat_interleave(times)
        return Batch(
            prompts=[p for p in self.prompts for _ in range(times)],
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            position_ids=None if self.position_ids is None else self.position_ids[idx],
            pad=[p for p in self.pad for _ in range(times)],
        )

    def select(self, rows: slice | Sequence[int]) -> Batch:
        """The rows ``rows`` (their padding unchanged, so positions stay where they were)."""
        idx = list(range(self.size))[rows] if isinstance(rows, slice) else list(rows)
        index = torch.tensor(idx, dtype=torch.long, device=self.input_ids.device)
        return Batch(
            prompts=[self.prompts[i] for i in idx],
            input_ids=self.input_ids[index],
            attention_mask=self.attention_mask[index],
            position_ids=None if self.position_ids is None else self.position_ids[index],
            pad=[self.pad[i] for i in idx],
        )

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.prompts,
            self.input_ids.to(device),
            self.attention_mask.to(device),
            None if self.position_ids is None else self.position_ids.to(device),
            self.pad,
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.position_ids is not None:
            inputs["position_ids"] = self.position_ids
        return inputs


def tokenize(tokenizer, prompts: str | Sequence[str], device: torch.device | str = "cpu") -> Batch:
    """Tokenise prompts (with the tokenizer's own special tokens, as a plain HF call would)."""
    if not isinstance(prompts, str | list | tuple):
        raise LayerscopeError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        raise LayerscopeError("no prompts given: pass at least one non-empty prompt")
    rows, spans = [], []
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise LayerscopeError(f"empty prompt {text!r}: every prompt needs at least one non-space character")
        try:
            enc = tokenizer(text, return_offsets_mapping=True)
            spans.append([tuple(s) for s in enc["offset_mapping"]])
        except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
            enc = tokenizer(text)
            spans.append(None)
        if not enc["input_ids"]:
            raise LayerscopeError(f"prompt {text!r} tokenises to no tokens with this model's tokenizer")
        rows.append(list(enc["input_ids"]))
    return from_ids(tokenizer, rows, texts, spans, device)


def from_ids(tokenizer, rows: list[list[int]], texts: list[str], spans, device) -> Batch:
    """Build a left-padded :class:`Batch` from token id lists."""
    width = max(len(r) for r in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pad = [width - len(r) for r in rows]
    input_ids = torch.tensor([[pad_id] * p + r for p, r in zip(pad, rows, strict=True)], dtype=torch.long)
    mask = torch.tensor([[0] * p + [1] * len(r) for p, r in zip(pad, rows, strict=True)], dtype=torch.long)
    position_ids = None
    if any(pad):
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    prompts = [
        PromptTokens(text, tokenizer.convert_ids_to_tokens(r), s) for text, r, s in zip(texts, rows, spans, strict=True)
    ]
    batch = Batch(prompts, input_ids, mask, position_ids, pad)
    return batch.to(device)
