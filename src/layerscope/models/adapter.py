"""Find a model's parts by inspection, with no per-architecture ports.

A transformer is, for our purposes: an embedding, a list of L identical blocks, a final norm and
(for decoders) an unembedding. ``transformers`` gives us the embeddings through
``get_input_embeddings`` / ``get_output_embeddings``; the blocks are the ``nn.ModuleList`` of L
modules of one class; the final norm is the norm-like child that sits beside that list in the same
parent. Inside a block, the attention and MLP sub-blocks are found by their names/classes. A table
of common names is the fallback, and when nothing fits the error says what was looked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from layerscope.errors import AdapterError
from layerscope.models.head import Head

_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_BLOCK_FALLBACKS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "encoder.layer")
_NORM_FALLBACKS = ("norm", "ln_f", "final_layer_norm", "norm_f", "final_layernorm")
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")


def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()


def _get(root: nn.Module, dotted: str) -> nn.Module | None:
    module = root
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


@dataclass
class Adapter:
    """The parts of a model that the engine needs, found by inspection.

    Attributes:
        blocks: the L transformer blocks, in order.
        blocks_path: dotted name of the block list (for messages).
        final_norm: the norm applied after the last block (None for post-LN encoders such as BERT).
        embed: the token embedding.
        unembed: the output projection to the vocabulary (None for encoders).
        attn: per block, the attention sub-block (None where not found).
        mlp: per block, the MLP sub-block (None where not found).
        block_output: what a block returns, as the self-check saw it: ``("tensor", 1)``,
            ``("tuple", n)`` or ``("list", n)`` (a skipped block returns the same structure).
        head: the verified head (:mod:`layerscope.models.head`), or None (an encoder, or a head
            the self-check could not verify: then ``head_problem`` says why).
    """

    blocks: nn.ModuleList
    blocks_path: str
    final_norm: nn.Module | None
    embed: nn.Module
    unembed: nn.Module | None
    attn: list[nn.Module | None] = field(default_factory=list)
    mlp: list[nn.Module | None] = field(default_factory=list)
    block_output: tuple[str, int] = ("tensor", 1)
    head: Callable | None = None
    head_problem: str | None = None

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @classmethod
    def inspect(cls, hf: nn.Module, parts: dict[str, str] | None = None) -> Adapter:
        """Build the adapter for any HF model; raise :class:`AdapterError` naming what is missing.

        ``parts={"blocks": "model.layers"}`` names the block list where inspection finds another.
        """
        config = _text_config(getattr(hf, "config", None))
        expected = next(
            (getattr(config, k) for k in _LAYER_COUNT_KEYS if isinstance(getattr(config, k, None), int)), None
        )
        if parts and "blocks" in parts:
            blocks = _get(hf, parts["blocks"])
            if not isinstance(blocks, nn.ModuleList):
                name = type(hf).__name__
                raise AdapterError(f"parts['blocks']={parts['blocks']!r} is not an nn.ModuleList of {name}")
            blocks_path = parts["blocks"]
        else:
            blocks_path, blocks = _find_blocks(hf, expected)
        parent = _get(hf, blocks_path.rsplit(".", 1)[0]) if "." in blocks_path else hf
        final_norm = _find_final_norm(parent)
        embed = hf.get_input_embeddings()
        get_out = getattr(hf, "get_output_embeddings", None)
        unembed = get_out() if callable(get_out) else None
        if embed is None:
            raise AdapterError(f"could not find the input embedding of {type(hf).__name__}")
        attn = [_find_child(b, _ATTN_NAMES, "attention") for b in blocks]
        mlp = [_find_child(b, _MLP_NAMES, "mlp") for b in blocks]
        return cls(blocks, blocks_path, final_norm, embed, unembed, attn, mlp)

    def unembed_states(self, states: torch.Tensor, tokens: Sequence[int] | None = None) -> torch.Tensor:
        """Logit lens: the model's own head (final norm, projections, unembedding, scale, soft cap).

        Args:
            states: ``[..., D]`` residual-stream states (``resid_post`` of any layer).
            tokens: only these token ids' logits (a plain linear unembedding then multiplies by
                their rows alone: much cheaper than the whole vocabulary).
        Returns:
            ``[..., V]`` logits (``[..., len(tokens)]`` with ``tokens``); for ``resid_post[L-1]``
            these are the model's own logits (verified at load).
        """
        if self.unembed is None:
            raise AdapterError("this model has no unembedding (an encoder): the logit lens needs a decoder")
        if self.head is None:
            raise AdapterError(self.head_problem or "this model's head was not verified")
        if tokens is not None and not isinstance(self.head, Head):
            return self.head(states)[..., list(tokens)]
        return self.head(states, tokens) if tokens is not None else self.head(states)


def _find_blocks(hf: nn.Module, expected: int | None) -> tuple[str, nn.ModuleList]:
    candidates = []
    for name, module in hf.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            classes = {type(m) for m in module}
            if len(classes) == 1 and (expected is None or len(module) == expected):
                candidates.append((name.count("."), -len(module), name, module))
    if candidates:
        # shallowest first: per-block sub-lists (e.g. experts) sit deeper than the block list
        _, _, name, module = min(candidates, key=lambda c: (c[0], c[1]))
        return name, module
    for path in _BLOCK_FALLBACKS:
        module = _get(hf, path)
        if isinstance(module, nn.ModuleList):
            return path, module
    raise AdapterError(
        f"could not find the transformer blocks of {type(hf).__name__}: looked for an nn.ModuleList of "
        f"{expected if expected is not None else 'L'} identical modules (config layer count) and for "
        f"{', '.join(_BLOCK_FALLBACKS)}"
    )


def _find_final_norm(parent: nn.Module) -> nn.Module | None:
    norms = [(name, m) for name, m in parent.named_children() if _is_norm(m)]
    if len(norms) == 1:
        return norms[0][1]
    for name in _NORM_FALLBACKS:
        module = getattr(parent, name, None)
        if module is not None:
            return module
    return None  # post-LN encoders (BERT) have no final norm


def _find_child(block: nn.Module, names: tuple[str, ...], class_hint: str) -> nn.Module | None:
    for name in names:
        child = getattr(block, name, None)
        if isinstance(child, nn.Module):
            return child
    for _, child in block.named_children():
        if class_hint in type(child).__name__.lower():
            return child
    return None
