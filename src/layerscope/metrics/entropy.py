"""Matrix-based Rényi entropy and the Layer-by-Layer entropy metrics.

Definitions (METHODS.md section 1, Skean et al. 2025).  For ``Z`` of shape
``N x D`` let ``K = Z Z^T`` (linear kernel) with eigenvalues ``lambda_i`` and
``p_i = lambda_i / sum_j lambda_j = lambda_i / tr(K)``.  Then

* ``S_alpha(Z) = 1 / (1 - alpha) * log sum_i p_i^alpha``    (alpha != 1)
* ``S_1(Z) = -sum_i p_i log p_i``  with ``0 log 0 = 0``     (von Neumann limit)

Normalisations (``normalization=``): ``"raw"``; ``"n"`` = / log N; ``"d"`` = / log D;
``"nd"`` = / (log N log D); ``"max"`` = / min(log N, log D) (the paper's plots).
The authors' spellings ``"logN"``, ``"logD"``, ``"logNlogD"``, ``"maxEntropy"`` are
accepted as aliases.  ``N = 1`` or ``D = 1`` makes a log vanish: the normalised value
is then NaN (0 / 0).

Natural logarithms throughout.  All computations are torch, float64, on the
device of the input, batched over any leading dimensions.  A matrix whose spectrum
is all zero (``Z = 0``) has no defined entropy and gives NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor

from layerscope.metrics.pooling import (
    Pooling,
    center_and_normalize_tokens,
    centered_tokens,
    check_states_mask,
    pool,
    token_counts,
)
from layerscope.names import canonical_name

__all__ = [
    "small_lapack",
    "Normalization",
    "NORMALIZATIONS",
    "GramMethod",
    "canonical_normalization",
    "normalize_entropy",
    "entropy_from_eigenvalues",
    "psd_matrix_entropy",
    "gram_eigenvalues",
    "matrix_entropy",
    "effective_rank",
    "prompt_entropy",
    "dataset_entropy",
]

Normalization = Literal["raw", "n", "d", "nd", "max"]
NORMALIZATIONS: tuple[str, ...] = ("raw", "n", "d", "nd", "max")
_ALIASES: dict[str, str] = {
    "raw": "raw",
    "n": "n",
    "d": "d",
    "nd": "nd",
    "max": "max",
    "logN": "n",
    "logD": "d",
    "logNlogD": "nd",
    "maxEntropy": "max",
}

GramMethod = Literal["auto", "gram", "covariance"]

SMALL_MATRIX = 1024
"""Largest matrix side that :func:`small_lapack` decomposes on a single CPU thread."""


@contextmanager
def small_lapack(matrix: Tensor, size: int | None = None) -> Iterator[None]:
    """Run the CPU LAPACK calls of the block on one thread when the matrices are small.

    torch's batched ``eigvalsh``/``eigh``/``cholesky`` on CPU loop over the batch and call
    LAPACK once per matrix; for sides up to ~1000 LAPACK gains little from intra-op threads,
    but its OpenMP threads spin and wait on each other, which on a busy machine is ruinous:
    31 float64 ``200 x 200`` ``eigvalsh`` took 0.44 s on one thread and 16 s on two (2-core
    machine under load; DiME on 200 prompts went from 54 s to a few seconds).  On CUDA, or for
    sides above ``SMALL_MATRIX``, nothing changes.  The thread count is restored on exit.

    Args:
        matrix: a tensor on the device the decomposition runs on.
        size: the side of the matrices decomposed (default: the last dim of ``matrix``).
    """
    side = matrix.shape[-1] if size is None else size
    threads = torch.get_num_threads()
    if matrix.device.type != "cpu" or threads == 1 or side > SMALL_MATRIX:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def canonical_normalization(normalization: str) -> str:
    """Map a normalisation name (or an authors'-code alias) to one of NORMALIZATIONS."""
    shown = [*NORMALIZATIONS, "or the aliases logN, logD, logNlogD, maxEntropy"]
    return canonical_name(normalization, NORMALIZATIONS, what="normalization", aliases=_ALIASES, shown=shown)


def normalize_entropy(entropy: Tensor, normalization: str, n: int | Tensor, d: int | Tensor) -> Tensor:
    """Divide ``entropy`` by the normaliser named ``normalization``.

    Args:
        entropy: any shape ``S``.
        normalization: ``"raw" | "n" | "d" | "nd" | "max"`` (or an alias).
        n, d: the ``N`` and ``D`` of the data; ints or tensors broadcastable to ``S``
            (a tensor ``n`` lets every prompt use its own length ``T_i``).

    Returns:
        Tensor of shape ``S`` (float64).
    """
    norm = canonical_normalization(normalization)
    entropy = entropy.to(torch.float64)
    if norm == "raw":
        return entropy

    def _log(x: int | Tensor) -> Tensor:
        if isinstance(x, Tensor):
            return torch.log(x.to(device=entropy.device, dtype=torch.float64))
        return torch.tensor(math.log(x), dtype=torch.float64, device=entropy.device)

    log_n, log_d = _log(n), _log(d)
    if norm == "n":
        return entropy / log_n
    if norm == "d":
        return entropy / log_d
    if norm == "nd":
        return entropy / (log_n * log_d)
    return entropy / torch.minimum(log_n, log_d)  # "max"


def entropy_from_eigenvalues(eigenvalues: Tensor, alpha: float = 1.0) -> Tensor:
    """Rényi entropy of order ``alpha`` of the spectrum ``eigenvalues [..., M]``.

    Eigenvalues are those of a PSD matrix (any scale: they are divided by their
    sum).  Tiny negative values from round-off are clipped to 0, as are values
    below the usual rank tolerance ``M * eps(float64) * max(lambda)`` so that
    numerical noise does not count as spectrum (this matters for small alpha).

    Returns:
        ``[...]`` float64.  NaN where the spectrum sums to zero.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    lam = eigenvalues.to(torch.float64).clamp_min(0.0)
    tol = lam.amax(dim=-1, keepdim=True) * lam.shape[-1] * torch.finfo(torch.float64).eps
    lam = torch.where(lam > tol, lam, torch.zeros_like(lam))
    p = lam / lam.sum(dim=-1, keepdim=True)
    if alpha == 1.0:
        # xlogy(0, 0) = 0 implements the convention 0 log 0 = 0.
        return -torch.special.xlogy(p, p).sum(dim=-1)
    # Only the support counts (matters for alpha = 0, where 0 ** 0 would be 1).
    powered = torch.where(p > 0, p.clamp_min(torch.finfo(torch.float64).tiny) ** alpha, torch.zeros_like(p))
    # Keep NaN (zero spectrum) as NaN.
    powered = torch.where(torch.isnan(p), p, powered)
    return torch.log(powered.sum(dim=-1)) / (1.0 - alpha)


def psd_matrix_entropy(K: Tensor, alpha: float = 1.0) -> Tensor:
    """Entropy of a symmetric PSD matrix ``K [..., M, M]`` normalised to unit trace.

    ``eigvalsh`` in float64 (the matrix is symmetrised first).  Returns ``[...]``.
    """
    K = K.to(torch.float64)
    K = 0.5 * (K + K.mT)
    with small_lapack(K):
        lam = torch.linalg.eigvalsh(K)
    return entropy_from_eigenvalues(lam, alpha)


def gram_eigenvalues(Z: Tensor, *, clamp_gram: bool = False, method: GramMethod = "auto") -> Tensor:
    """Eigenvalues of the linear Gram matrix of ``Z [..., N, D]`` (float64, ascending).

    ``Z Z^T`` (``N x N``) and ``Z^T Z`` (``D x D``) have the same non-zero eigenvalues
    (from the SVD ``Z = U S V^T``: both have the non-zero spectrum ``S^2``), so with
    ``method="auto"`` the smaller of the two is decomposed.  ``method="gram"``
    forces ``Z Z^T``, ``method="covariance"`` forces ``Z^T Z``.

    ``clamp_gram=True`` reproduces the authors' code: ``K = Z Z^T`` is clamped
    elementwise to ``>= 0`` before the eigendecomposition.  That is not a spectral
    operation, so it is only defined on the ``N x N`` Gram and forces it.  (The
    authors' code clamps whichever of the two matrices it formed; the two agree in
    the usual case ``N <= D``.)

    Returns:
        ``[..., min(N, D)]`` for ``auto``; ``[..., N]`` for ``gram``/``clamp_gram``;
        ``[..., D]`` for ``covariance``.  Raw values (not clipped; see
        :func:`entropy_from_eigenvalues`).
    """
    if method not in ("auto", "gram", "covariance"):
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'gram' or 'covariance'")
    if clamp_gram and method == "covariance":
        raise ValueError("clamp_gram=True needs the N x N Gram; use method='auto' or 'gram'")
    Z = Z.to(torch.float64)
    N, D = Z.shape[-2], Z.shape[-1]
    use_gram = clamp_gram or method == "gram" or (method == "auto" and N <= D)
    K = Z @ Z.mT if use_gram else Z.mT @ Z
    if clamp_gram:
        K = K.clamp_min(0.0)
    K = 0.5 * (K + K.mT)
    with small_lapack(K):
        return torch.linalg.eigvalsh(K)


def matrix_entropy(
    Z: Tensor,
    alpha: float = 1.0,
    normalization: Normalization | str = "raw",
    clamp_gram: bool = False,
    *,
    method: GramMethod = "auto",
) -> Tensor:
    """Matrix-based Rényi entropy ``S_alpha`` of the rows of ``Z``.

    Args:
        Z: ``[..., N, D]`` -- N samples (rows) of dimension D; leading dims batched.
        alpha: Rényi order (``1`` = von Neumann, the default).
        normalization: ``"raw" | "n" | "d" | "nd" | "max"`` (see module docstring).
        clamp_gram: clamp ``K = Z Z^T`` elementwise to ``>= 0`` (authors' code).
        method: which Gram to decompose: ``"auto"`` (the smaller), ``"gram"``
            (``Z Z^T``) or ``"covariance"`` (``Z^T Z``); all give the same result
            when ``clamp_gram`` is False.

    Returns:
        ``[...]`` float64 on the device of ``Z``.
    """
    lam = gram_eigenvalues(Z, clamp_gram=clamp_gram, method=method)
    h = entropy_from_eigenvalues(lam, alpha)
    return normalize_entropy(h, normalization, Z.shape[-2], Z.shape[-1])


def effective_rank(Z: Tensor, clamp_gram: bool = False) -> Tensor:
    """Effective rank ``exp(S_1(Z))`` (raw von Neumann entropy).

    ``Z [..., N, D]`` -> ``[...]`` float64.  Rank-r data with r equal non-zero
    singular values has effective rank r.
    """
    return torch.exp(matrix_entropy(Z, alpha=1.0, normalization="raw", clamp_gram=clamp_gram))


_CHUNK_ELEMENTS = 1 << 22
"""float64 elements per chunk in :func:`_centred_token_gram` (32 MB: stays in cache, no page faults)."""


def _centred_token_gram(states: Tensor, mask: Tensor) -> Tensor:
    """``X X^T`` of the centred real tokens: ``[..., B, T, D]`` -> ``[..., B, T, T]`` float64.

    Chunked over the leading dims (e.g. depth): one float64 copy of all states would be
    ``(L + 1) B T D`` doubles written and read back from memory; chunk by chunk it stays in
    cache, which halves the time of prompt entropy on a batch of real states.
    """
    lead = states.shape[:-3]
    B, T, D = states.shape[-3:]
    flat = states.reshape(-1, B, T, D)
    step = max(1, _CHUNK_ELEMENTS // max(B * T * D, 1))
    grams = []
    for start in range(0, flat.shape[0], step):
        X = centered_tokens(flat[start : start + step], mask)
        grams.append(X @ X.mT)
    return torch.cat(grams).reshape(*lead, B, T, T)


def prompt_entropy(
    states: Tensor,
    mask: Tensor | None = None,
    alpha: float = 1.0,
    normalization: Normalization | str = "raw",
    clamp_gram: bool = False,
    *,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Prompt entropy: entropy of each prompt's token matrix, averaged over prompts.

    For prompt ``b`` with ``T_b`` real tokens, ``Z_b`` is its ``T_b x D`` matrix of
    real-token states, centred across tokens and with every row L2-normalised;
    the prompt's value is ``S_alpha(Z_b)`` normalised with ``N = T_b`` (its own
    length) and ``D``.

    Padding: the centred/normalised rows of padding positions are exactly zero and
    are kept in the batched ``T x D`` matrix.  Zero rows of ``Z`` add only zero
    eigenvalues to ``Z Z^T`` (and leave ``Z^T Z`` unchanged), so the spectrum --
    hence the raw entropy -- is that of the unpadded ``T_b x D`` matrix, whatever
    side the padding is on.  Only the normalisers use ``T_b``.

    Prompts with fewer than 2 real tokens are skipped (after centring a single
    token is the zero vector: no spectrum).  Note that centring makes the rank at
    most ``T_b - 1``; the ``"n"``/``"max"`` normalisers still use ``log T_b`` as the
    paper does.

    Args:
        states: ``[..., B, T, D]`` hidden states (e.g. ``[L, B, T, D]``).
        mask: ``[B, T]`` bool, True = real token; None = no padding.
        alpha, normalization, clamp_gram: as in :func:`matrix_entropy`.
        reduction: ``"mean"`` -> mean over the non-skipped prompts, shape ``[...]``;
            ``"none"`` -> per prompt ``[..., B]`` with NaN for skipped prompts.

    Returns:
        ``[...]`` (or ``[..., B]``) float64.
    """
    states, mask = check_states_mask(states, mask, dtype=None)
    T, D = states.shape[-2], states.shape[-1]
    if T > D:  # the D x D side is the smaller one: normalise the rows themselves
        Z = center_and_normalize_tokens(states, mask)  # [..., B, T, D], zero pad rows
        h = matrix_entropy(Z, alpha=alpha, normalization="raw", clamp_gram=clamp_gram)  # [..., B]
    else:
        # Row normalisation in Gram space: with X the centred tokens and G = X X^T,
        # Z Z^T = G_ij / sqrt(G_ii G_jj) -- T x T work instead of another pass over T x D.
        K = _centred_token_gram(states, mask)  # [..., B, T, T] float64
        diag = torch.diagonal(K, dim1=-2, dim2=-1)
        inv = torch.where(diag > 0, diag.rsqrt(), torch.zeros_like(diag))
        K = K * inv.unsqueeze(-1) * inv.unsqueeze(-2)
        if clamp_gram:
            K = K.clamp_min(0.0)
        K = 0.5 * (K + K.mT)
        with small_lapack(K):
            h = entropy_from_eigenvalues(torch.linalg.eigvalsh(K), alpha)  # [..., B]
    counts = token_counts(mask)  # [B]
    h = normalize_entropy(h, normalization, counts, states.shape[-1])
    valid = counts >= 2
    h = torch.where(valid, h, torch.full_like(h, float("nan")))
    if reduction == "none":
        return h
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    if not bool(valid.any()):
        raise ValueError("no prompt has at least 2 real tokens")
    return h[..., valid].mean(dim=-1)


def dataset_entropy(
    states: Tensor,
    mask: Tensor | None = None,
    pooling: Pooling = "mean",
    alpha: float = 1.0,
    normalization: Normalization | str = "raw",
    clamp_gram: bool = False,
) -> Tensor:
    """Dataset entropy: entropy of the ``N x D`` matrix of pooled prompt embeddings.

    Args:
        states: ``[..., B, T, D]``; the ``B`` prompts are the ``N`` samples.
        mask: ``[B, T]`` bool, True = real token.
        pooling: ``"mean"`` (raw states, mean over real tokens -- the paper's text,
            default), ``"normalized-mean"`` (authors' code: centred, row-normalised
            tokens, then mean) or ``"last"`` (last real token).
        alpha, normalization, clamp_gram: as in :func:`matrix_entropy`
            (``N = B``).

    Returns:
        ``[...]`` float64.
    """
    pooled = pool(states, mask, pooling)  # [..., B, D]
    return matrix_entropy(pooled, alpha=alpha, normalization=normalization, clamp_gram=clamp_gram)
