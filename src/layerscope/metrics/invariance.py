"""Augmentation-invariance metrics: InfoNCE, LiDAR, DiME (METHODS.md section 1).

All three take *pooled* embeddings (one vector per prompt and augmented view, e.g.
from :func:`layerscope.metrics.pooling.mean_pool`), are batched over any leading
dimensions (e.g. depth) and compute in float64 on the input's device.

* :func:`infonce` -- SimCLR NT-Xent loss between two views.  Lower = more invariant.
* :func:`lidar` -- entropy of the LDA matrix over K views per prompt.  Higher =
  better separated prompts relative to augmentation noise.
* :func:`dime` -- difference of matrix-based entropies between shuffled and
  aligned pairs of views.  Higher = the two views share more information.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from layerscope.metrics.entropy import (
    Normalization,
    entropy_from_eigenvalues,
    gram_eigenvalues,
    normalize_entropy,
    psd_matrix_entropy,
    small_lapack,
)

__all__ = ["infonce", "lidar", "lda_matrix", "dime", "random_permutations"]


def _check_views(view_a: Tensor, view_b: Tensor, *, same_dim: bool = True) -> tuple[Tensor, Tensor]:
    if view_a.dim() < 2 or view_b.dim() < 2:
        raise ValueError(f"views must have shape [..., N, D], got {tuple(view_a.shape)} and {tuple(view_b.shape)}")
    shape_a = view_a.shape if same_dim else view_a.shape[:-1]
    shape_b = view_b.shape if same_dim else view_b.shape[:-1]
    if shape_a != shape_b:
        what = "shape" if same_dim else "leading dims and N"
        raise ValueError(f"views must have the same {what}, got {tuple(view_a.shape)} and {tuple(view_b.shape)}")
    return view_a.to(torch.float64), view_b.to(device=view_a.device, dtype=torch.float64)


def infonce(
    view_a: Tensor,
    view_b: Tensor,
    temperature: float = 0.1,
    *,
    normalize: bool = False,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """SimCLR NT-Xent (InfoNCE) loss of two views of the same N prompts.

    The 2N embeddings ``z = [view_a; view_b]`` are compared with plain dot
    products ``s_ij = z_i . z_j / temperature`` (as METHODS.md and the authors'
    code: the embeddings are **not** L2-normalised unless ``normalize=True``,
    which gives the usual cosine-similarity SimCLR).  For every anchor ``i`` the
    positive is the other view of the same prompt and the candidates are all
    ``j != i``::

        loss_i = -s_{i,pos(i)} + log sum_{j != i} exp(s_ij)

    and the result is the mean over the 2N anchors (computed with logsumexp, so
    large dot products do not overflow).

    Args:
        view_a, view_b: ``[..., N, D]`` pooled embeddings; row ``n`` of both views
            comes from prompt ``n``.
        temperature: softmax temperature (0.1 in the paper).
        normalize: L2-normalise the embeddings first (cosine similarity).
        reduction: ``"mean"`` -> ``[...]``; ``"none"`` -> per anchor ``[..., 2N]``.

    Returns:
        ``[...]`` float64.  Lower = more invariant.  For comparison, a random
        guess among the 2N - 1 candidates scores ``log(2N - 1)``.
    """
    a, b = _check_views(view_a, view_b)
    if normalize:
        a = torch.nn.functional.normalize(a, dim=-1)
        b = torch.nn.functional.normalize(b, dim=-1)
    N = a.shape[-2]
    z = torch.cat([a, b], dim=-2)  # [..., 2N, D]
    logits = (z @ z.mT) / temperature  # [..., 2N, 2N]
    eye = torch.eye(2 * N, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    idx = torch.arange(2 * N, device=z.device)
    pos = (idx + N) % (2 * N)
    positive = logits[..., idx, pos]  # [..., 2N]
    loss = torch.logsumexp(logits, dim=-1) - positive
    if reduction == "none":
        return loss
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    return loss.mean(dim=-1)


def _inverse_sqrt_psd(S: Tensor) -> Tensor:
    """``S^(-1/2)`` of a symmetric positive-definite ``S [..., D, D]`` via eigh."""
    with small_lapack(S):
        evals, evecs = torch.linalg.eigh(0.5 * (S + S.mT))
    return (evecs * evals.rsqrt().unsqueeze(-2)) @ evecs.mT


def _scatter(views: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``(S_w [..., D, D], B [..., D, N])`` with ``S_b = B B^T`` (see :func:`lidar`)."""
    if views.dim() < 3:
        raise ValueError(f"views must have shape [..., N, K, D], got {tuple(views.shape)}")
    x = views.to(torch.float64)
    N, K, D = x.shape[-3], x.shape[-2], x.shape[-1]
    class_means = x.mean(dim=-2)  # [..., N, D]
    grand_mean = class_means.mean(dim=-2, keepdim=True)  # [..., 1, D] (balanced classes)
    # S_b = B B^T with B = (mu_n - mu)^T / sqrt(N):  [..., D, N]
    B = (class_means - grand_mean).mT / N**0.5
    # S_w = W W^T / (N K) + eps I with W the within-class deviations: [..., D, N K]
    W = (x - class_means.unsqueeze(-2)).reshape(*x.shape[:-3], N * K, D)
    S_w = (W.mT @ W) / (N * K)
    S_w = S_w + eps * torch.eye(D, dtype=x.dtype, device=x.device)
    return S_w, B


def _lda_factor(views: Tensor, eps: float) -> Tensor:
    """``C [..., D, N]`` with ``C C^T = S_w^(-1/2) S_b S_w^(-1/2)`` (see :func:`lidar`)."""
    S_w, B = _scatter(views, eps)
    return _inverse_sqrt_psd(S_w) @ B  # [..., D, N]


def _whitened_between(views: Tensor, eps: float) -> Tensor:
    """``X [..., D, N]`` whose ``X X^T`` has the spectrum of the LDA matrix, via Cholesky.

    With ``S_w = R R^T`` (Cholesky) and ``X = R^(-1) B``, ``X X^T = R^(-1) S_b R^(-T)`` is similar
    to ``S_w^(-1) S_b`` and so to ``S_w^(-1/2) S_b S_w^(-1/2)``: same eigenvalues, for a Cholesky
    and a triangular solve (~D^3 / 3 flops) instead of a full ``D x D`` eigendecomposition
    (several times that).  ``S_w`` must be positive definite: with ``eps = 0`` and fewer
    within-class directions than dimensions it is not, and a ValueError says so (the
    ``S_w^(-1/2)`` of the definition does not exist then either).
    """
    S_w, B = _scatter(views, eps)
    with small_lapack(S_w):
        R, info = torch.linalg.cholesky_ex(S_w)
        if bool((info != 0).any()):
            raise ValueError(
                "LiDAR: the within-class covariance S_w is singular (fewer within-class directions than "
                "dimensions); use eps > 0 (1e-4 in the paper)"
            )
        return torch.linalg.solve_triangular(R, B, upper=False)


def lda_matrix(views: Tensor, eps: float = 1e-4) -> Tensor:
    """The LiDAR LDA matrix ``S_w^(-1/2) S_b S_w^(-1/2)``: ``[..., N, K, D]`` -> ``[..., D, D]``.

    See :func:`lidar` for the definitions of ``S_b`` and ``S_w``.
    """
    C = _lda_factor(views, eps)
    return C @ C.mT


def lidar(
    views: Tensor,
    eps: float = 1e-4,
    normalization: Normalization | str = "max",
    alpha: float = 1.0,
) -> Tensor:
    """LiDAR: matrix entropy of the LDA matrix of augmented views.

    Each of the N prompts is its own class with K augmented views.  With class
    means ``mu_n = mean_k z_nk`` and grand mean ``mu = mean_n mu_n``:

    * ``S_b = 1/N sum_n (mu_n - mu)(mu_n - mu)^T`` (between-class covariance),
    * ``S_w = 1/(N K) sum_{n,k} (z_nk - mu_n)(z_nk - mu_n)^T + eps I`` (within),
    * ``LiDAR = S_alpha`` of the eigenvalues of ``S_w^(-1/2) S_b S_w^(-1/2)``.

    Writing ``S_b = B B^T`` (B is ``D x N``) and ``S_w = R R^T`` (Cholesky), the LDA
    matrix has the spectrum of ``X X^T`` with ``X = R^(-1) B`` (a similar matrix, see
    :func:`lda_matrix` for the matrix itself); its non-zero eigenvalues are those of the
    smaller of ``X X^T`` / ``X^T X``, which is what is decomposed (exactly PSD).  No
    ``D x D`` eigendecomposition is needed.

    Normalisation: default ``"max"``, i.e. divided by ``min(log N, log D)`` with N
    the number of prompts (classes) -- as in the authors' code
    (``entropy_normalization(x, 'maxEntropy', NUM_SAMPLES, D)``) and in the
    paper's plots.  Note ``rank(S_b) <= N - 1`` (the class means are centred), so
    the normalised value is at most ``log(N - 1) / log N`` when ``N <= D``.
    ``"raw"`` gives the unnormalised entropy.

    Args:
        views: ``[..., N, K, D]`` pooled embeddings of K augmentations of N prompts.
        eps: ridge added to ``S_w`` (1e-4 in the paper).
        normalization: ``"raw" | "n" | "d" | "nd" | "max"`` (N = prompts).
        alpha: Rényi order (1 in the paper).

    Returns:
        ``[...]`` float64.
    """
    X = _whitened_between(views, eps)  # [..., D, N]
    # Rows of X^T are N vectors in R^D: gram_eigenvalues(X^T) = spectrum of X X^T (smaller side).
    lam = gram_eigenvalues(X.mT)
    h = entropy_from_eigenvalues(lam, alpha)
    return normalize_entropy(h, normalization, views.shape[-3], views.shape[-1])


def random_permutations(n: int, n_permutations: int, seed: int = 0, device: torch.device | str | None = None) -> Tensor:
    """``n_permutations`` seeded random permutations of ``range(n)``: long ``[P, n]``.

    Drawn with a CPU ``torch.Generator`` (reproducible across devices), then moved
    to ``device``.
    """
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(n_permutations)])
    return perms.to(device) if device is not None else perms


def _unit_trace(K: Tensor) -> Tensor:
    tr = torch.diagonal(K, dim1=-2, dim2=-1).sum(dim=-1)
    return K / tr[..., None, None]


def dime(
    view_a: Tensor,
    view_b: Tensor,
    n_permutations: int = 10,
    seed: int = 0,
    alpha: float = 1.0,
    *,
    normalization: Normalization | str = "raw",
    permutations: Tensor | None = None,
) -> Tensor:
    """DiME: difference of matrix-based entropies between shuffled and aligned views.

    ``K_A = A A^T / tr(A A^T)`` and ``K_B`` likewise (``N x N`` Grams of the two
    views, unit trace).  With ``H`` the matrix entropy of a PSD matrix after
    normalising it to unit trace (the Hadamard product of two PSD matrices is PSD
    by the Schur product theorem)::

        DiME = mean_P H(K_A o P K_B P^T) - H(K_A o K_B)

    over random permutation matrices P (``o`` = elementwise product).  Aligned
    views that share information have a lower joint entropy than shuffled ones,
    so higher DiME = more shared information.

    Facts worth knowing (and tested):

    * DiME is exactly 0 when the pairing carries no information, i.e. when
      ``P K_B P^T = K_B`` for every P (e.g. all rows of one view equal) or when
      ``K_A`` is a multiple of the identity (orthogonal, equal-norm rows): then
      every term equals the aligned one.
    * Relabelling the prompts consistently in both views (``A[q], B[q]``) leaves
      the aligned term unchanged and maps the set of permutations to itself, so
      DiME is unchanged when the permutations are conjugated accordingly (and
      in expectation over P).  Permuting only one view breaks the pairing and
      DiME drops to about 0.
    * Identical views give DiME > 0 (for non-degenerate data).

    Unlike the authors' code (which, when N > D, passes ``D x D`` covariances to
    its DiME routine), the ``N x N`` Grams are always used: DiME needs the
    sample-aligned kernels.

    Args:
        view_a, view_b: ``[..., N, D]`` pooled embeddings; row n of both views
            comes from prompt n (only the ``N x N`` Grams are used, so the two
            views may even have different widths ``D_a``, ``D_b``).
        n_permutations: number of random permutations (10 in the paper).
        seed: seed of the permutations (the same permutations are used for every
            leading index, e.g. every layer).
        alpha: Rényi order (1 in the paper).
        normalization: applied to the difference with ``N`` and ``D`` of
            ``view_a`` (the authors' code divides by ``min(log N, log D)`` for
            "max"); default raw.
        permutations: optional explicit long tensor ``[P, N]`` of permutations
            (overrides ``n_permutations``/``seed``).

    Returns:
        ``[...]`` float64.
    """
    a, b = _check_views(view_a, view_b, same_dim=False)
    N, D = a.shape[-2], a.shape[-1]
    if permutations is None:
        permutations = random_permutations(N, n_permutations, seed, device=a.device)
    else:
        permutations = permutations.to(device=a.device, dtype=torch.long)
        if permutations.dim() != 2 or permutations.shape[-1] != N:
            raise ValueError(f"permutations must have shape [P, N={N}], got {tuple(permutations.shape)}")
    if permutations.shape[0] == 0:
        raise ValueError("need at least one permutation")
    K_a = _unit_trace(a @ a.mT)
    K_b = _unit_trace(b @ b.mT)
    aligned = psd_matrix_entropy(_unit_trace(K_a * K_b), alpha)
    shuffled = torch.zeros_like(aligned)
    # One permutation at a time keeps memory at one N x N matrix per leading index.
    for perm in permutations:
        K_b_perm = K_b[..., perm, :][..., :, perm]  # P K_B P^T
        shuffled = shuffled + psd_matrix_entropy(_unit_trace(K_a * K_b_perm), alpha)
    shuffled = shuffled / permutations.shape[0]
    return normalize_entropy(shuffled - aligned, normalization, N, D)
