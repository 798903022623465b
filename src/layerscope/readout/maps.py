"""Affine maps between residual streams (the Patchscope's f), fitted by least squares with bias.

Within a model, the tuned lens maps layer l to the last layer. Across models, a map takes layer l
of model A to layer l* of model B; it is fitted on the states of both models at *aligned*
positions of shared text.

Aligning positions across tokenizers: two tokens are aligned when they **end at the same character**
of the text (their character offsets from the tokenizers' offset mappings). At such a pair both
models have read exactly the same text, so both states stand for "everything up to character c".
Tokens of one model that end inside a token of the other have no partner and are left out, as are
special tokens (empty spans, e.g. Gemma's BOS) and each text's first aligned token (position-0
states are attention sinks with outlier norms in most models). The same rule lets a cross-model
Patchscope read a source position of A: give the source position in A's tokens as usual.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from layerscope.engine.chunking import DEFAULT_BUDGET, row_bytes, rows_per_chunk
from layerscope.errors import LayerscopeError


@dataclass
class AffineMap:
    """``f(h) = h @ weight + bias`` with ``weight [D_in, D_out]`` and ``bias [D_out]``."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """``[..., D_in] -> [..., D_out]`` (computed in the map's dtype, returned in ``h``'s float dtype)."""
        out = h.to(self.weight.dtype) @ self.weight + self.bias
        return out.to(h.dtype) if h.is_floating_point() else out

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)

    @classmethod
    def identity(cls, d: int, dtype: torch.dtype = torch.float32) -> AffineMap:
        return cls(torch.eye(d, dtype=dtype), torch.zeros(d, dtype=dtype))

    @classmethod
    def fit(cls, X: torch.Tensor, Y: torch.Tensor) -> AffineMap:
        """Least squares with bias: ``argmin_{W, b} ||X W + 1 b - Y||_F`` (solved in float64).

        Args:
            X: ``[N, D_in]`` inputs; Y: ``[N, D_out]`` targets (N > D_in for a determined fit).
        """
        if X.dim() != 2 or Y.dim() != 2 or X.shape[0] != Y.shape[0]:
            raise LayerscopeError(f"fit needs X [N, D_in] and Y [N, D_out] with the same N, got {X.shape}, {Y.shape}")
        if X.shape[0] <= X.shape[1]:
            raise LayerscopeError(
                f"an affine fit of {X.shape[1]} dims needs more than {X.shape[1] + 1} positions, got {X.shape[0]}: "
                "give more text"
            )
        design = torch.cat([X.double(), torch.ones(X.shape[0], 1, dtype=torch.float64)], dim=1)
        solution = _least_squares(design, Y.double())  # [D_in + 1, D_out]
        return cls(solution[:-1].float().contiguous(), solution[-1].float().contiguous())


def _least_squares(A: torch.Tensor, B: torch.Tensor, max_condition: float = 1e12) -> torch.Tensor:
    """``argmin_X ||A X - B||`` in float64.

    Normal equations on column-scaled A (a Cholesky solve of the small ``[D, D]`` Gram matrix, about
    10x faster than an SVD-based solver at N ~ 10^4), unless the scaled Gram matrix is too
    ill-conditioned for that to be accurate (condition > ``max_condition``: ~4 correct digits in
    float64); then the SVD-based ``gelsd`` (numpy's solver; the minimum-norm solution).
    """
    scale = A.norm(dim=0).clamp(min=1e-300)
    scaled = A / scale
    gram = scaled.T @ scaled
    eigenvalues = torch.linalg.eigvalsh(gram)
    if eigenvalues[0] > 0 and eigenvalues[-1] / eigenvalues[0] < max_condition:
        factor, info = torch.linalg.cholesky_ex(gram)
        if int(info) == 0:
            return torch.cholesky_solve(scaled.T @ B, factor) / scale[:, None]
    return torch.linalg.lstsq(A, B, driver="gelsd").solution


def save_maps(path: str | os.PathLike, maps: dict[str, AffineMap], metadata: dict) -> Path:
    """Save named affine maps and a JSON-able ``metadata`` dict as one safetensors file (atomically)."""
    from safetensors.torch import save_file

    from layerscope.results.io import atomic_write

    tensors = {}
    for key, m in maps.items():
        tensors[f"{key}.weight"] = m.weight.contiguous()
        tensors[f"{key}.bias"] = m.bias.contiguous()
    meta = {"layerscope": json.dumps(metadata, default=str), "keys": json.dumps(list(maps))}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_maps(path: str | os.PathLike) -> tuple[dict[str, AffineMap], dict]:
    """Read a file written by :func:`save_maps`: ``(maps, metadata)``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise LayerscopeError(f"no map file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            keys = json.loads(meta["keys"])
            maps = {k: AffineMap(handle.get_tensor(f"{k}.weight"), handle.get_tensor(f"{k}.bias")) for k in keys}
            metadata = json.loads(meta["layerscope"])
    except (KeyError, ValueError, OSError) as error:
        raise LayerscopeError(f"{path} is not a layerscope map file ({error})") from None
    return maps, metadata


def token_ends(model, text: str) -> list[int | None]:
    """Per token of ``text`` in ``model``'s tokenizer, the character where it ends (None: special token)."""
    enc = model.tokenizer(text, return_offsets_mapping=True)
    return [e if e > s else None for s, e in enc["offset_mapping"]]


def aligned_positions(model_a, model_b, text: str, skip_first: bool = True) -> list[tuple[int, int]]:
    """Pairs ``(i_a, i_b)`` of token indices of ``text`` in two tokenizers that end at the same character."""
    ends_b = {e: i for i, e in enumerate(token_ends(model_b, text)) if e is not None}
    pairs = [(i, ends_b[e]) for i, e in enumerate(token_ends(model_a, text)) if e is not None and e in ends_b]
    return pairs[1:] if skip_first else pairs


def _states(model, texts: Sequence[str], layers: list[int], positions: list[list[int]], budget) -> torch.Tensor:
    """``[len(layers), N, D]`` resid_post states at the given token positions of each text."""
    longest = max(len(model.tokenizer(t)["input_ids"]) for t in texts)
    size = rows_per_chunk(
        budget, row_bytes(model, longest, captured_states=len(layers), logits_positions=0), len(texts)
    )
    parts = []
    for start in range(0, len(texts), size):
        out = model.run(list(texts[start : start + size]), capture=("resid_post", layers), logits=None)
        stacked = out.stack("resid_post", layers)  # [S, B, T, D]
        for b, pos in enumerate(positions[start : start + size]):
            index = torch.tensor([out.batch.pad[b] + p for p in pos], dtype=torch.long)
            parts.append(stacked[:, b, index])
    return torch.cat(parts, dim=1)


def fit_cross_model(
    model_a,
    model_b,
    pairs: Sequence[tuple[int, int]],
    texts: Sequence[str],
    *,
    batch_budget: str | int | None = DEFAULT_BUDGET,
) -> dict[tuple[int, int], AffineMap]:
    """Fit ``f: resid_post[l] of A -> resid_post[l*] of B`` for each (l, l*) in ``pairs`` on ``texts``.

    Positions are aligned by character offsets (see the module docstring).
    Returns ``{(l, l*): AffineMap}``, usable as a Patchscope ``mapping``.
    """
    texts = [t for t in texts if t.strip()]
    aligned = [aligned_positions(model_a, model_b, t) for t in texts]
    keep = [i for i, a in enumerate(aligned) if a]
    if not keep:
        raise LayerscopeError("no aligned positions in the texts: give longer shared text")
    texts, aligned = [texts[i] for i in keep], [aligned[i] for i in keep]
    layers_a = sorted({l for l, _ in pairs})
    layers_b = sorted({l for _, l in pairs})
    xa = _states(model_a, texts, layers_a, [[i for i, _ in a] for a in aligned], batch_budget)
    xb = _states(model_b, texts, layers_b, [[j for _, j in a] for a in aligned], batch_budget)
    return {(la, lb): AffineMap.fit(xa[layers_a.index(la)], xb[layers_b.index(lb)]) for la, lb in pairs}
