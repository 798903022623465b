"""Representation-quality metrics of Layer by Layer (Skean et al., ICML 2025).

Pure tensor math, no model loading: every function takes hidden states or pooled
embeddings as torch tensors, is batched over any leading dimensions (e.g. depth
``L``), runs on the input's device and returns float64.

Shape conventions:

* ``states [..., B, T, D]`` with ``mask [B, T]`` bool (True = real token; padding on
  either side, ``None`` = no padding);
* ``Z [..., N, D]``: N samples of dimension D;
* ``view_a, view_b [..., N, D]``: pooled embeddings of two augmented views of N
  prompts (row n of both comes from prompt n);
* ``views [..., N, K, D]``: pooled embeddings of K augmented views of N prompts.

``METRICS`` maps snake_case names to the functions; their inputs:

==================  ====================================================  =========
name                inputs (first positional arguments)                   output
==================  ====================================================  =========
matrix_entropy      ``Z [..., N, D]``, alpha, normalization, clamp_gram   ``[...]``
prompt_entropy      ``states [..., B, T, D]``, ``mask [B, T]``, alpha,    ``[...]``
                    normalization, clamp_gram
dataset_entropy     ``states``, ``mask``, pooling, alpha, normalization,  ``[...]``
                    clamp_gram
effective_rank      ``Z [..., N, D]``                                     ``[...]``
curvature           ``states``, ``mask``, variant ("paper" /              ``[...]``
                    "token-angle")
infonce             ``view_a [..., N, D]``, ``view_b [..., N, D]``,       ``[...]``
                    temperature
lidar               ``views [..., N, K, D]``, eps, normalization, alpha   ``[...]``
dime                ``view_a [..., N, D]``, ``view_b [..., N, D]``,       ``[...]``
                    n_permutations, seed, alpha
==================  ====================================================  =========

Direction: higher entropy / effective rank = more spread-out representations;
lower curvature = straighter trajectories; lower InfoNCE, higher LiDAR and
higher DiME = more invariant to augmentations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from layerscope.metrics.entropy import (
    NORMALIZATIONS,
    Normalization,
    canonical_normalization,
    dataset_entropy,
    effective_rank,
    entropy_from_eigenvalues,
    gram_eigenvalues,
    matrix_entropy,
    normalize_entropy,
    prompt_entropy,
    psd_matrix_entropy,
)
from layerscope.metrics.geometry import CurvatureVariant, curvature, vector_angle
from layerscope.metrics.invariance import dime, infonce, lda_matrix, lidar, random_permutations
from layerscope.metrics.pooling import (
    POOLINGS,
    Pooling,
    center_and_normalize_tokens,
    compact_tokens,
    last_token_pool,
    mean_pool,
    normalized_mean_pool,
    pool,
)

METRICS: dict[str, Callable[..., Any]] = {
    # Z [..., N, D] -> [...]
    "matrix_entropy": matrix_entropy,
    # states [..., B, T, D], mask [B, T] -> [...]
    "prompt_entropy": prompt_entropy,
    # states [..., B, T, D], mask [B, T], pooling -> [...]
    "dataset_entropy": dataset_entropy,
    # Z [..., N, D] -> [...]
    "effective_rank": effective_rank,
    # states [..., B, T, D], mask [B, T], variant -> [...]
    "curvature": curvature,
    # view_a [..., N, D], view_b [..., N, D] -> [...]
    "infonce": infonce,
    # views [..., N, K, D] -> [...]
    "lidar": lidar,
    # view_a [..., N, D], view_b [..., N, D] -> [...]
    "dime": dime,
}
"""Registry of the Layer-by-Layer metrics by snake_case name (see module docstring)."""

__all__ = [
    "METRICS",
    "NORMALIZATIONS",
    "POOLINGS",
    "CurvatureVariant",
    "Normalization",
    "Pooling",
    "canonical_normalization",
    "center_and_normalize_tokens",
    "compact_tokens",
    "curvature",
    "dataset_entropy",
    "dime",
    "effective_rank",
    "entropy_from_eigenvalues",
    "gram_eigenvalues",
    "infonce",
    "last_token_pool",
    "lda_matrix",
    "lidar",
    "matrix_entropy",
    "mean_pool",
    "normalize_entropy",
    "normalized_mean_pool",
    "pool",
    "prompt_entropy",
    "psd_matrix_entropy",
    "random_permutations",
    "vector_angle",
]
