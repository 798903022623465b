"""Tests of layerscope.metrics against independent NumPy computations and analytic values.

The NumPy references below deliberately use the most direct formulation (explicit
loops over prompts / anchors / classes, always the N x N Gram, ``np.linalg.eigh``)
rather than the batched tricks of the library.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from layerscope.metrics import (
    METRICS,
    curvature,
    dataset_entropy,
    dime,
    effective_rank,
    infonce,
    last_token_pool,
    lda_matrix,
    lidar,
    matrix_entropy,
    mean_pool,
    normalized_mean_pool,
    prompt_entropy,
    random_permutations,
)

ALPHAS = [0.5, 1.0, 2.0, 3.0]
NORMS = ["raw", "n", "d", "nd", "max"]


# --------------------------------------------------------------------------- NumPy references


def np_entropy_from_eigs(lam: np.ndarray, alpha: float) -> float:
    # Eigenvalues below NumPy's matrix_rank tolerance are round-off, not spectrum.
    lam = np.where(lam > lam.max() * lam.size * np.finfo(float).eps, lam, 0.0)
    p = lam / lam.sum()
    p = p[p > 0]
    if alpha == 1.0:
        return float(-(p * np.log(p)).sum())
    return float(np.log((p**alpha).sum()) / (1.0 - alpha))


def np_normalise(h: float, norm: str, n: int, d: int) -> float:
    return {
        "raw": h,
        "n": h / math.log(n),
        "d": h / math.log(d),
        "nd": h / (math.log(n) * math.log(d)),
        "max": h / min(math.log(n), math.log(d)),
    }[norm]


def np_matrix_entropy(Z: np.ndarray, alpha: float, norm: str = "raw", clamp: bool = False) -> float:
    K = Z @ Z.T  # always the N x N Gram
    if clamp:
        K = np.clip(K, 0.0, None)
    h = np_entropy_from_eigs(np.linalg.eigh(K)[0], alpha)
    return np_normalise(h, norm, Z.shape[0], Z.shape[1])


def np_center_normalise(X: np.ndarray) -> np.ndarray:
    X = X - X.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)  # a zero row (1-token prompt) stays zero


def np_real_tokens(states: np.ndarray, mask: np.ndarray, b: int) -> np.ndarray:
    """states [B, T, D] -> the real-token rows of prompt b, in order."""
    return states[b][mask[b]]


def np_prompt_entropy(states: np.ndarray, mask: np.ndarray, alpha: float, norm: str) -> float:
    vals = []
    for b in range(states.shape[0]):
        X = np_real_tokens(states, mask, b)
        if X.shape[0] < 2:
            continue
        vals.append(np_matrix_entropy(np_center_normalise(X), alpha, norm))
    return float(np.mean(vals))


def np_pool(states: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    out = []
    for b in range(states.shape[0]):
        X = np_real_tokens(states, mask, b)
        if method == "mean":
            out.append(X.mean(axis=0))
        elif method == "last":
            out.append(X[-1])
        else:
            out.append(np_center_normalise(X).mean(axis=0))
    return np.stack(out)


def np_angle(a: np.ndarray, b: np.ndarray) -> float:
    c = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


def np_curvature(states: np.ndarray, mask: np.ndarray, variant: str) -> float:
    per_prompt = []
    for b in range(states.shape[0]):
        X = np_real_tokens(states, mask, b)
        if variant == "paper":
            if X.shape[0] < 3:
                continue
            V = [X[k + 1] - X[k] for k in range(X.shape[0] - 1)]
            angles = [np_angle(V[k], V[k + 1]) for k in range(len(V) - 1)]
        else:
            if X.shape[0] < 2:
                continue
            Xn = np_center_normalise(X)
            angles = [np_angle(Xn[k], Xn[k + 1]) for k in range(X.shape[0] - 1)]
        per_prompt.append(np.mean(angles))
    return float(np.mean(per_prompt))


def np_infonce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    z = np.concatenate([a, b])
    n2, n = z.shape[0], a.shape[0]
    losses = []
    for i in range(n2):
        pos = (i + n) % n2
        sims = np.array([z[i] @ z[j] / tau for j in range(n2) if j != i])
        m = sims.max()
        lse = m + np.log(np.exp(sims - m).sum())
        losses.append(lse - z[i] @ z[pos] / tau)
    return float(np.mean(losses))


def np_lda(views: np.ndarray, eps: float) -> np.ndarray:
    N, K, D = views.shape
    means = views.mean(axis=1)
    mu = views.reshape(N * K, D).mean(axis=0)
    Sb = np.zeros((D, D))
    for n in range(N):
        Sb += np.outer(means[n] - mu, means[n] - mu)
    Sb /= N
    Sw = np.zeros((D, D))
    for n in range(N):
        for k in range(K):
            Sw += np.outer(views[n, k] - means[n], views[n, k] - means[n])
    Sw = Sw / (N * K) + eps * np.eye(D)
    w, U = np.linalg.eigh(Sw)
    inv_sqrt = U @ np.diag(w**-0.5) @ U.T
    return inv_sqrt @ Sb @ inv_sqrt


def np_lidar(views: np.ndarray, eps: float, norm: str, alpha: float = 1.0) -> float:
    M = np_lda(views, eps)
    h = np_entropy_from_eigs(np.linalg.eigh((M + M.T) / 2)[0], alpha)
    return np_normalise(h, norm, views.shape[0], views.shape[2])


def np_psd_entropy(K: np.ndarray, alpha: float) -> float:
    return np_entropy_from_eigs(np.linalg.eigh(K / np.trace(K))[0], alpha)


def np_dime(a: np.ndarray, b: np.ndarray, perms: np.ndarray, alpha: float) -> float:
    Ka = a @ a.T
    Ka /= np.trace(Ka)
    Kb = b @ b.T
    Kb /= np.trace(Kb)
    aligned = np_psd_entropy(Ka * Kb, alpha)
    shuffled = []
    for perm in perms:
        P = np.eye(len(perm))[perm]  # (P Kb P^T)[i, j] = Kb[perm[i], perm[j]]
        shuffled.append(np_psd_entropy(Ka * (P @ Kb @ P.T), alpha))
    return float(np.mean(shuffled) - aligned)


# --------------------------------------------------------------------------- helpers


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def random_mask(rng: np.random.Generator, lengths: list[int], T: int, side: str) -> np.ndarray:
    mask = np.zeros((len(lengths), T), dtype=bool)
    for b, n in enumerate(lengths):
        if side == "right":
            mask[b, :n] = True
        elif side == "left":
            mask[b, T - n :] = True
        else:  # scattered positions, order preserved
            mask[b, np.sort(rng.choice(T, size=n, replace=False))] = True
    return mask


def place(tokens: list[np.ndarray], mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put each prompt's [T_b, D] tokens at its mask positions; padding = large noise."""
    B, T = mask.shape
    D = tokens[0].shape[-1]
    out = 100.0 * rng.standard_normal((B, T, D))
    for b in range(B):
        out[b, mask[b]] = tokens[b]
    return out


def orthonormal_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q[:n]


# --------------------------------------------------------------------------- matrix entropy


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", [(6, 10), (12, 5)])
def test_matrix_entropy_matches_numpy(alpha: float, norm: str, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    Z = rng.standard_normal(shape)
    got = matrix_entropy(t(Z), alpha=alpha, normalization=norm)
    assert got.dtype == torch.float64 and got.shape == ()
    assert got.item() == pytest.approx(np_matrix_entropy(Z, alpha, norm), rel=1e-9, abs=1e-9)


def test_normalization_aliases_match() -> None:
    Z = t(np.random.default_rng(1).standard_normal((7, 9)))
    for alias, name in [("logN", "n"), ("logD", "d"), ("logNlogD", "nd"), ("maxEntropy", "max")]:
        assert matrix_entropy(Z, normalization=alias).item() == matrix_entropy(Z, normalization=name).item()
    with pytest.raises(ValueError):
        matrix_entropy(Z, normalization="bogus")


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("shape", [(5, 11), (11, 5), (8, 8)])
def test_gram_and_covariance_paths_agree(alpha: float, shape: tuple[int, int]) -> None:
    Z = t(np.random.default_rng(2).standard_normal(shape))
    gram = matrix_entropy(Z, alpha, method="gram")
    cov = matrix_entropy(Z, alpha, method="covariance")
    auto = matrix_entropy(Z, alpha)
    torch.testing.assert_close(gram, cov, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(auto, gram, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, *ALPHAS])
@pytest.mark.parametrize("n,d", [(4, 4), (5, 9), (7, 16)])
def test_isotropic_data_has_entropy_log_n(alpha: float, n: int, d: int) -> None:
    Z = 3.7 * orthonormal_rows(np.random.default_rng(3), n, d)
    assert matrix_entropy(t(Z), alpha).item() == pytest.approx(math.log(n), abs=1e-10)
    assert matrix_entropy(t(Z), alpha, normalization="n").item() == pytest.approx(1.0, abs=1e-10)
    assert effective_rank(t(Z)).item() == pytest.approx(n, rel=1e-10)


@pytest.mark.parametrize("alpha", [0.0, *ALPHAS])
@pytest.mark.parametrize("n,d", [(6, 4), (3, 10)])
def test_rank_one_data_has_entropy_zero(alpha: float, n: int, d: int) -> None:
    rng = np.random.default_rng(4)
    Z = np.outer(rng.standard_normal(n), rng.standard_normal(d))
    assert matrix_entropy(t(Z), alpha).item() == pytest.approx(0.0, abs=1e-10)
    assert effective_rank(t(Z)).item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("r", [1, 2, 3, 5])
def test_effective_rank_of_equal_spectrum_rank_r_is_r(r: int) -> None:
    rng = np.random.default_rng(5)
    U = orthonormal_rows(rng, 8, 8)[:, :r]  # 8 x r, orthonormal columns
    V = orthonormal_rows(rng, 12, 12)[:, :r]  # 12 x r
    Z = 2.5 * U @ V.T  # 8 x 12, r equal singular values
    assert effective_rank(t(Z)).item() == pytest.approx(r, rel=1e-10)
    # alpha = 0 is the log of the rank (checks the rank tolerance on round-off eigenvalues)
    assert matrix_entropy(t(Z), alpha=0.0).item() == pytest.approx(math.log(r), abs=1e-10)


def test_matrix_entropy_batched_equals_loop() -> None:
    Z = t(np.random.default_rng(6).standard_normal((2, 3, 6, 9)))
    for norm in NORMS:
        got = matrix_entropy(Z, 2.0, norm)
        assert got.shape == (2, 3)
        for i in range(2):
            for j in range(3):
                assert got[i, j].item() == pytest.approx(matrix_entropy(Z[i, j], 2.0, norm).item(), abs=1e-12)


@pytest.mark.parametrize("shape", [(6, 10), (12, 5)])
def test_clamp_gram_matches_numpy_and_uses_n_by_n_gram(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    Z = rng.standard_normal(shape)
    for alpha in ALPHAS:
        got = matrix_entropy(t(Z), alpha, "max", clamp_gram=True).item()
        assert got == pytest.approx(np_matrix_entropy(Z, alpha, "max", clamp=True), rel=1e-9, abs=1e-9)
    # Non-negative data: the clamp is a no-op.
    P = np.abs(Z)
    torch.testing.assert_close(matrix_entropy(t(P), clamp_gram=True), matrix_entropy(t(P)))


def test_zero_matrix_entropy_is_nan() -> None:
    assert torch.isnan(matrix_entropy(torch.zeros(3, 4)))


# --------------------------------------------------------------------------- prompt / dataset entropy


def make_batch(
    seed: int, lengths: list[int], T: int, D: int, side: str, L: int = 3
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Random [L, B, T, D] states with the given real lengths; returns (states, mask, tokens[L])."""
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, lengths, T, side)
    per_layer_tokens = [[rng.standard_normal((n, D)) for n in lengths] for _ in range(L)]
    states = np.stack([place(tok, mask, rng) for tok in per_layer_tokens])
    return states, mask, per_layer_tokens


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("side", ["right", "left", "scattered"])
def test_prompt_entropy_matches_numpy_loop(alpha: float, norm: str, side: str) -> None:
    lengths = [5, 9, 1, 12, 3]  # the 1-token prompt is skipped
    states, mask, _ = make_batch(10, lengths, T=12, D=8, side=side)
    got = prompt_entropy(t(states), t(mask), alpha, norm)
    assert got.shape == (3,)
    for layer in range(3):
        ref = np_prompt_entropy(states[layer], mask, alpha, norm)
        assert got[layer].item() == pytest.approx(ref, rel=1e-8, abs=1e-9)


def test_prompt_entropy_left_and_right_padding_agree() -> None:
    rng = np.random.default_rng(11)
    lengths, T, D = [4, 7, 2, 7], 7, 10
    tokens = [rng.standard_normal((n, D)) for n in lengths]
    results = []
    for side in ["left", "right", "scattered"]:
        mask = random_mask(rng, lengths, T, side)
        states = place(tokens, mask, rng)  # different padding noise each time
        results.append(prompt_entropy(t(states), t(mask), 1.0, "max"))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(results[0], results[2], rtol=1e-10, atol=1e-10)


def test_prompt_entropy_normalises_each_prompt_by_its_own_length() -> None:
    # One-hot tokens e_1..e_T centred form a regular simplex: T - 1 equal eigenvalues,
    # so the raw prompt entropy is log(T - 1) and the "n" normalisation is
    # log(T - 1) / log(T) with T the prompt's own length (not the padded length).
    D, T = 16, 10
    lengths = [3, 6, 10]
    rng = np.random.default_rng(12)
    tokens = [np.eye(D)[:n] for n in lengths]
    mask = random_mask(rng, lengths, T, "left")
    states = t(place(tokens, mask, rng))
    raw = prompt_entropy(states, t(mask), reduction="none")
    per_n = prompt_entropy(states, t(mask), normalization="n", reduction="none")
    per_max = prompt_entropy(states, t(mask), normalization="max", reduction="none")
    for b, n in enumerate(lengths):
        assert raw[b].item() == pytest.approx(math.log(n - 1), abs=1e-10)
        assert per_n[b].item() == pytest.approx(math.log(n - 1) / math.log(n), abs=1e-10)
        assert per_max[b].item() == pytest.approx(math.log(n - 1) / min(math.log(n), math.log(D)), abs=1e-10)
    mean_n = prompt_entropy(states, t(mask), normalization="n")
    expected = np.mean([math.log(n - 1) / math.log(n) for n in lengths])
    assert mean_n.item() == pytest.approx(expected, abs=1e-10)


def test_prompt_entropy_skips_short_prompts() -> None:
    states, mask, _ = make_batch(13, [1, 6, 4], T=6, D=5, side="right", L=1)
    per = prompt_entropy(t(states), t(mask), reduction="none")
    assert torch.isnan(per[0, 0]) and not torch.isnan(per[0, 1:]).any()
    assert prompt_entropy(t(states), t(mask))[0].item() == pytest.approx(per[0, 1:].mean().item())


def test_prompt_entropy_without_mask_equals_all_true_mask() -> None:
    states = t(np.random.default_rng(14).standard_normal((2, 3, 5, 7)))
    all_true = torch.ones(3, 5, dtype=torch.bool)
    torch.testing.assert_close(prompt_entropy(states, None), prompt_entropy(states, all_true))


def test_prompt_entropy_clamp_gram_matches_numpy() -> None:
    states, mask, _ = make_batch(15, [4, 6], T=6, D=9, side="left", L=1)
    got = prompt_entropy(t(states), t(mask), clamp_gram=True)[0].item()
    ref = []
    for b in range(2):
        Z = np_center_normalise(np_real_tokens(states[0], mask, b))
        ref.append(np_matrix_entropy(Z, 1.0, clamp=True))
    assert got == pytest.approx(np.mean(ref), rel=1e-9)


@pytest.mark.parametrize("method", ["mean", "normalized-mean", "last"])
@pytest.mark.parametrize("side", ["right", "left", "scattered"])
def test_pooling_and_dataset_entropy_match_numpy(method: str, side: str) -> None:
    states, mask, _ = make_batch(20, [3, 5, 8, 1, 6, 8, 2], T=8, D=6, side=side, L=2)
    fns = {"mean": mean_pool, "normalized-mean": normalized_mean_pool, "last": last_token_pool}
    pooled = fns[method](t(states), t(mask))
    assert pooled.shape == (2, 7, 6)
    for layer in range(2):
        ref = np_pool(states[layer], mask, method)
        np.testing.assert_allclose(pooled[layer].numpy(), ref, rtol=1e-10, atol=1e-12)
        for alpha in ALPHAS:
            for norm in NORMS:
                got = dataset_entropy(t(states), t(mask), method, alpha, norm)[layer].item()
                assert got == pytest.approx(np_matrix_entropy(ref, alpha, norm), rel=1e-8, abs=1e-9)


# --------------------------------------------------------------------------- curvature


@pytest.mark.parametrize("variant", ["paper", "token-angle"])
@pytest.mark.parametrize("side", ["right", "left", "scattered"])
def test_curvature_matches_numpy_loop(variant: str, side: str) -> None:
    states, mask, _ = make_batch(30, [2, 7, 4, 9, 1], T=9, D=5, side=side)
    got = curvature(t(states), t(mask), variant)
    assert got.shape == (3,)
    for layer in range(3):
        # abs 1e-7: np.arccos of a cosine that rounds near +-1 is only accurate to ~1e-8
        # (a 2-token prompt has an angle of exactly pi in the token-angle variant).
        assert got[layer].item() == pytest.approx(np_curvature(states[layer], mask, variant), abs=1e-7)


def test_curvature_of_a_straight_line_is_zero() -> None:
    rng = np.random.default_rng(31)
    D, T = 7, 9
    start, direction = rng.standard_normal(D), rng.standard_normal(D)
    steps = np.cumsum(rng.uniform(0.5, 2.0, size=T))  # uneven, monotone steps
    line = start + steps[:, None] * direction
    mask = random_mask(rng, [T, 5], T, "left")
    states = place([line, line[:5]], mask, rng)
    assert curvature(t(states), t(mask)).item() == pytest.approx(0.0, abs=1e-7)


def test_curvature_of_a_zigzag_is_right_angle() -> None:
    # z_k = (k, k mod 2) gives steps (1, 1), (1, -1), (1, 1), ...: every turn is pi / 2.
    rng = np.random.default_rng(32)
    D, T = 6, 8
    k = np.arange(T)
    plane = np.stack([k, k % 2], axis=1).astype(float)
    rotation = orthonormal_rows(rng, D, D)[:2]  # isometric embedding of the plane into R^D
    path = 3.0 * plane @ rotation + rng.standard_normal(D)
    mask = random_mask(rng, [T, 6], T, "right")
    states = place([path, path[:6]], mask, rng)
    assert curvature(t(states), t(mask), "paper").item() == pytest.approx(math.pi / 2, abs=1e-10)


def test_token_angle_curvature_of_one_hot_tokens() -> None:
    # Centred one-hot tokens: cos = -1 / (T - 1) between any two distinct tokens.
    D, T = 10, 6
    rng = np.random.default_rng(33)
    mask = random_mask(rng, [T], T, "right")
    states = place([np.eye(D)[:T]], mask, rng)
    expected = math.acos(-1.0 / (T - 1))
    assert curvature(t(states), t(mask), "token-angle").item() == pytest.approx(expected, abs=1e-10)


def test_curvature_skips_short_prompts_and_zero_steps() -> None:
    states, mask, _ = make_batch(34, [2, 6, 5], T=6, D=4, side="right", L=1)
    per = curvature(t(states), t(mask), reduction="none")
    assert torch.isnan(per[0, 0]) and not torch.isnan(per[0, 1:]).any()
    # A repeated token makes a zero step: the angles touching it are dropped.
    x = np.random.default_rng(35).standard_normal((5, 3))
    x[2] = x[1]
    got = curvature(t(x[None]), None).item()
    v = np.diff(x, axis=0)  # v_1 = 0: only the (v_2, v_3) angle is defined
    assert got == pytest.approx(np_angle(v[2], v[3]), rel=1e-10)


# --------------------------------------------------------------------------- InfoNCE


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_infonce_matches_numpy(temperature: float) -> None:
    rng = np.random.default_rng(40)
    a = rng.standard_normal((2, 6, 5))
    b = a + 0.3 * rng.standard_normal(a.shape)
    got = infonce(t(a), t(b), temperature)
    assert got.shape == (2,)
    for i in range(2):
        assert got[i].item() == pytest.approx(np_infonce(a[i], b[i], temperature), rel=1e-10)
    # cosine-similarity variant
    an = a / np.linalg.norm(a, axis=-1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=-1, keepdims=True)
    got_n = infonce(t(a), t(b), temperature, normalize=True)
    assert got_n[0].item() == pytest.approx(np_infonce(an[0], bn[0], temperature), rel=1e-10)


def test_infonce_lower_for_identical_than_for_independent_views() -> None:
    rng = np.random.default_rng(41)
    a = t(rng.standard_normal((16, 32)))
    b = t(rng.standard_normal((16, 32)))
    assert infonce(a, a).item() < infonce(a, b).item()
    assert infonce(a, a, normalize=True).item() < infonce(a, b, normalize=True).item()


# --------------------------------------------------------------------------- LiDAR


@pytest.mark.parametrize("n,k,d", [(6, 4, 5), (4, 3, 9), (5, 2, 12)])
@pytest.mark.parametrize("norm", NORMS)
def test_lidar_matches_numpy(n: int, k: int, d: int, norm: str) -> None:
    rng = np.random.default_rng(50)
    centres = rng.standard_normal((2, n, 1, d))
    views = centres + 0.5 * rng.standard_normal((2, n, k, d))
    got = lidar(t(views), normalization=norm)
    assert got.shape == (2,)
    for i in range(2):
        for alpha in [1.0, 2.0]:
            ref = np_lidar(views[i], 1e-4, norm, alpha)
            val = lidar(t(views[i]), normalization=norm, alpha=alpha).item()
            assert val == pytest.approx(ref, rel=1e-7, abs=1e-9)
        assert got[i].item() == pytest.approx(np_lidar(views[i], 1e-4, norm), rel=1e-7, abs=1e-9)
    np.testing.assert_allclose(lda_matrix(t(views[0])).numpy(), np_lda(views[0], 1e-4), rtol=1e-8, atol=1e-10)


def test_lidar_default_is_max_normalised() -> None:
    views = t(np.random.default_rng(51).standard_normal((5, 3, 7)))
    raw = lidar(views, normalization="raw").item()
    assert lidar(views).item() == pytest.approx(raw / min(math.log(5), math.log(7)))


def test_lidar_measures_the_rank_of_class_separation() -> None:
    # LiDAR is an entropy: it grows with the number of directions along which the
    # classes are separated (relative to within-class noise), not with the scale.
    rng = np.random.default_rng(52)
    noise = 0.1 * rng.standard_normal((8, 4, 6))
    all_directions = rng.standard_normal((8, 1, 6)) + noise
    one_direction = rng.standard_normal((8, 1, 1)) * rng.standard_normal((1, 1, 6)) + noise
    assert lidar(t(all_directions)).item() > lidar(t(one_direction)).item()
    # Scale invariance: scaling the data by c and eps by c^2 leaves the LDA matrix unchanged.
    scaled = lidar(t(1e3 * all_directions), eps=1e-4 * 1e6).item()
    assert scaled == pytest.approx(lidar(t(all_directions)).item(), rel=1e-9)


# --------------------------------------------------------------------------- DiME


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_dime_matches_numpy(alpha: float) -> None:
    rng = np.random.default_rng(60)
    a = rng.standard_normal((2, 7, 4))
    b = a + 0.5 * rng.standard_normal(a.shape)
    perms = random_permutations(7, 10, seed=3)
    got = dime(t(a), t(b), alpha=alpha, permutations=perms)
    assert got.shape == (2,)
    for i in range(2):
        assert got[i].item() == pytest.approx(np_dime(a[i], b[i], perms.numpy(), alpha), rel=1e-9, abs=1e-12)
    # The seeded default draws exactly random_permutations(N, n_permutations, seed).
    torch.testing.assert_close(dime(t(a), t(b), n_permutations=10, seed=3, alpha=alpha), got)


def test_dime_is_seeded() -> None:
    rng = np.random.default_rng(61)
    a = t(rng.standard_normal((9, 5)))
    b = a + 0.5 * t(rng.standard_normal((9, 5)))
    assert dime(a, b, seed=1).item() == dime(a, b, seed=1).item()
    assert dime(a, b, seed=1).item() != dime(a, b, seed=2).item()


def test_dime_of_identical_views_is_positive() -> None:
    a = t(np.random.default_rng(62).standard_normal((10, 6)))
    assert dime(a, a).item() > 0.0


def test_dime_is_zero_when_the_pairing_carries_no_information() -> None:
    rng = np.random.default_rng(63)
    a = t(rng.standard_normal((8, 5)))
    # (1) a view whose Gram is invariant to every permutation (all rows equal):
    #     P K_B P^T = K_B, so every shuffled term equals the aligned term.
    constant = t(np.tile(rng.standard_normal(5), (8, 1)))
    assert dime(a, constant).item() == pytest.approx(0.0, abs=1e-12)
    assert dime(constant, a).item() == pytest.approx(0.0, abs=1e-12)
    # (2) K_A proportional to the identity (orthonormal rows): K_A o P K_B P^T is diagonal
    #     with the permuted diagonal of K_B, which has the same spectrum.
    ortho = t(2.0 * orthonormal_rows(rng, 8, 8))
    assert dime(ortho, a).item() == pytest.approx(0.0, abs=1e-12)


def test_dime_under_consistent_and_inconsistent_relabelling() -> None:
    rng = np.random.default_rng(64)
    N = 32
    a = rng.standard_normal((N, 6))
    b = a + 0.3 * rng.standard_normal(a.shape)
    perms = random_permutations(N, 20, seed=0).numpy()
    q = rng.permutation(N)
    q_inv = np.argsort(q)
    # Relabelling both views by q: the aligned term is unchanged and permutation
    # perm on the relabelled views corresponds to q o perm o q^-1 on the originals.
    conjugated = np.stack([q[perm[q_inv]] for perm in perms])
    relabelled = dime(t(a[q]), t(b[q]), permutations=t(perms)).item()
    original = dime(t(a), t(b), permutations=t(conjugated)).item()
    assert relabelled == pytest.approx(original, rel=1e-10)
    # Shuffling only one view destroys the pairing: the aligned term becomes just one
    # more draw of a shuffled term, so DiME is ~0 on average (each draw is noisy, of
    # either sign) and far below the value for the correctly paired views.
    aligned = dime(t(a), t(b), permutations=t(perms)).item()
    broken = [dime(t(a), t(b[rng.permutation(N)]), permutations=t(perms)).item() for _ in range(8)]
    assert aligned > 0.0
    assert max(broken) < aligned
    assert abs(float(np.mean(broken))) < 0.25 * aligned


# --------------------------------------------------------------------------- registry / misc


def test_registry() -> None:
    expected = {
        "prompt_entropy",
        "dataset_entropy",
        "curvature",
        "infonce",
        "lidar",
        "dime",
        "effective_rank",
        "matrix_entropy",
    }
    assert expected <= set(METRICS)
    assert all(callable(f) for f in METRICS.values())
    assert METRICS["prompt_entropy"] is prompt_entropy


def test_low_precision_inputs_are_computed_in_float64() -> None:
    states, mask, _ = make_batch(70, [4, 6], T=6, D=8, side="left", L=1)
    ref = prompt_entropy(t(states), t(mask))
    got = prompt_entropy(t(states).to(torch.float32), t(mask))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        prompt_entropy(torch.zeros(2, 3, 4), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError):
        infonce(torch.zeros(3, 4), torch.zeros(2, 4))


# --------------------------------------------------------------------------- CPU thread handling


def test_small_lapack_runs_on_one_thread_and_restores() -> None:
    from layerscope.metrics.entropy import SMALL_MATRIX, small_lapack

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with small_lapack(torch.zeros(3, 3)):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), small_lapack(torch.zeros(3, 3)):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2  # restored after an exception too
        with small_lapack(torch.zeros(1, 1), size=SMALL_MATRIX + 1):
            assert torch.get_num_threads() == 2  # large matrices keep their threads
    finally:
        torch.set_num_threads(before)


def test_results_do_not_depend_on_the_thread_count() -> None:
    rng = np.random.default_rng(70)
    views = t(rng.standard_normal((3, 6, 4, 5)))
    a, b = t(rng.standard_normal((3, 9, 5))), t(rng.standard_normal((3, 9, 5)))
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((lidar(views), dime(a, b), matrix_entropy(a)))
    finally:
        torch.set_num_threads(before)
    for x, y in zip(*results, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_lidar_without_ridge_needs_a_nonsingular_s_w() -> None:
    # eps = 0: a full-rank S_w goes through Cholesky and matches the eigh reference; with fewer
    # within-class directions than dimensions S_w is singular and the error says what to do.
    rng = np.random.default_rng(71)
    views = rng.standard_normal((6, 5, 4))
    assert lidar(t(views), eps=0.0).item() == pytest.approx(np_lidar(views, 0.0, "max"), rel=1e-7)
    singular = rng.standard_normal((3, 2, 8))  # 3 * (2 - 1) = 3 within-class directions < 8
    with pytest.raises(ValueError, match="singular.*eps > 0"):
        lidar(t(singular), eps=0.0)
    assert math.isfinite(lidar(t(singular)).item())  # the default ridge makes it well defined
