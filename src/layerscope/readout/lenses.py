"""Lenses: read a layer's residual state as next-token logits, ``logits = unembed(f_l(h))``.

A lens is the Patchscope with T = S, i* = i, l* = L-1 and mapping f_l, computed directly:
patching ``f_l(h)`` into ``resid_post[L-1]`` makes the target's next-token logits exactly
``final_norm + unembedding`` of ``f_l(h)``.

- :class:`LogitLens`: f_l = identity (nostalgebraist, 2020).
- :class:`TunedLens`: f_l = an affine map from layer l to the last layer, fitted by least squares
  with bias on the positions of a text corpus (the Patchscopes paper's baseline; Belrose et al.
  train theirs with a KL loss instead). The last layer's map is the exact identity, so the lens
  agrees with the model there by construction. Fitted lenses are saved as safetensors files and
  cached under ``$LAYERSCOPE_CACHE/tuned_lens/``, keyed by the model and the fitting text.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch

from layerscope.datasets import corpus_split
from layerscope.engine.chunking import DEFAULT_BUDGET, row_bytes, rows_per_chunk
from layerscope.errors import LayerscopeError
from layerscope.readout.maps import AffineMap, load_maps, save_maps
from layerscope.readout.unembed import Unembed


class Lens(ABC):
    """Maps ``resid_post[layer]`` states into the last layer's space, then unembeds them."""

    name: str = "lens"

    @abstractmethod
    def transform(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., D] -> [..., D]``: the state as the last layer would hold it."""

    def logits(self, model, h: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., D] -> [..., V]`` next-token logits: :class:`Unembed` (final norm + unembedding) of the
        transformed state."""
        return Unembed(model)(self.transform(h, layer))


class LogitLens(Lens):
    name = "logit_lens"

    def transform(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        return h


class TunedLens(Lens):
    """One affine map per layer to the last layer, fitted by least squares with bias.

    Attributes:
        maps: ``{layer: AffineMap}`` for layers ``0..L-2`` (layer L-1 is the identity).
        n_layers, d_model: the model's shape. metadata: what it was fitted on.
    """

    name = "tuned_lens"

    def __init__(self, maps: dict[int, AffineMap], n_layers: int, d_model: int, metadata: dict | None = None):
        self.maps, self.n_layers, self.d_model = maps, n_layers, d_model
        self.metadata = dict(metadata or {})
        self.path: Path | None = None
        self.from_cache = False

    def transform(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        layer = layer % self.n_layers
        if layer == self.n_layers - 1:
            return h
        if layer not in self.maps:
            raise LayerscopeError(f"this tuned lens has no map for layer {layer} (it has {sorted(self.maps)})")
        return self.maps[layer](h)

    def as_mapping(self) -> dict[tuple[int, int], AffineMap]:
        """``{(l, L-1): map}``: the Patchscope mapping that makes ``patchscope(..., target_layers=L-1)`` this lens."""
        last = self.n_layers - 1
        return {**{(l, last): m for l, m in self.maps.items()}, (last, last): AffineMap.identity(self.d_model)}

    @classmethod
    def fit(
        cls,
        model,
        texts: Sequence[str],
        *,
        skip_first: bool = True,
        batch_budget: str | int | None = DEFAULT_BUDGET,
        progress: bool = False,
    ) -> TunedLens:
        """Fit on every token position of ``texts`` (but each text's first: an attention sink).

        Per layer l < L-1: ``W_l, b_l = argmin ||H_l W + b - H_{L-1}||`` over the positions,
        where ``H_l`` are the ``resid_post[l]`` states (before the final norm).
        """
        from layerscope.progress import bar

        texts = [t for t in texts if t.strip()]
        if not texts:
            raise LayerscopeError("no text to fit the tuned lens on")
        n = model.n_layers
        layers = list(range(n))
        longest = max(len(model.tokenizer(t)["input_ids"]) for t in texts)
        size = rows_per_chunk(
            batch_budget, row_bytes(model, longest, captured_states=n, logits_positions=0), len(texts)
        )
        parts = []
        for start in bar(range(0, len(texts), size), progress=progress, desc="tuned lens: states", leave=False):
            out = model.run(texts[start : start + size], capture=("resid_post", layers), logits=None)
            stacked = out.stack("resid_post", layers)  # [L, B, T, D]
            for b, prompt in enumerate(out.batch.prompts):
                first = out.batch.pad[b] + (1 if skip_first else 0)
                parts.append(stacked[:, b, first : out.batch.pad[b] + len(prompt)])
        states = torch.cat(parts, dim=1)  # [L, N, D]
        target = states[n - 1]
        maps = {}
        for l in bar(range(n - 1), progress=progress, desc="tuned lens: fit", leave=False):
            maps[l] = AffineMap.fit(states[l], target)
        metadata = {
            "model": model.name,
            "n_positions": int(states.shape[1]),
            "n_texts": len(texts),
            "unembedding": Unembed(model).fingerprint(),  # load() refuses the lens for another head
        }
        return cls(maps, n, model.d_model, metadata)

    def save(self, path: str | os.PathLike) -> Path:
        meta = {**self.metadata, "kind": "tuned_lens", "n_layers": self.n_layers, "d_model": self.d_model}
        return save_maps(path, {str(l): m for l, m in self.maps.items()}, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, model=None) -> TunedLens:
        """Load a saved lens; with ``model``, check that it fits the model's shape and its unembedding."""
        maps, meta = load_maps(path)
        if meta.get("kind") != "tuned_lens":
            raise LayerscopeError(f"{path} holds no tuned lens")
        lens = cls({int(k): m for k, m in maps.items()}, int(meta["n_layers"]), int(meta["d_model"]), meta)
        if model is not None and (lens.n_layers, lens.d_model) != (model.n_layers, model.d_model):
            raise LayerscopeError(
                f"the tuned lens in {path} is for {lens.n_layers} layers x d_model {lens.d_model} "
                f"({meta.get('model')}), not {model.name} ({model.n_layers} x {model.d_model}): fit one for this model"
            )
        fitted_for = meta.get("unembedding")
        if model is not None and fitted_for and fitted_for != Unembed(model).fingerprint():
            raise LayerscopeError(
                f"the tuned lens in {path} was fitted for another unembedding ({meta.get('model')}, "
                f"{fitted_for}), not {model.name}'s: fit one for this model"
            )
        lens.path = Path(path)
        return lens

    @classmethod
    def cache_path(cls, model, texts: Sequence[str]) -> Path:
        from layerscope.models.loading import cache_root

        digest = hashlib.sha256(
            "\n".join(
                [model.name, model.source, str(model.n_layers), str(model.d_model), str(model.dtype), *texts]
            ).encode()
        ).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.name)
        return cache_root() / "tuned_lens" / f"{safe}-{digest}.safetensors"

    @classmethod
    def cached(
        cls,
        model,
        texts: Sequence[str] | None = None,
        *,
        batch_budget: str | int | None = DEFAULT_BUDGET,
        progress: bool = False,
    ) -> TunedLens:
        """The lens for ``model`` fitted on ``texts`` (default: the corpus's fit split), from the cache
        when it was fitted before, else fitted now and saved there."""
        texts = corpus_split()[0] if texts is None else list(texts)
        path = cls.cache_path(model, texts)
        if path.is_file():
            lens = cls.load(path, model)
            lens.from_cache = True
            return lens
        lens = cls.fit(model, texts, batch_budget=batch_budget, progress=progress)
        lens.save(path)
        lens.path = path
        return lens
