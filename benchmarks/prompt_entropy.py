"""Prompt entropy at every depth for 1000 prompts: layerscope's batched metric vs a per-prompt NumPy loop.

Both compute on the SAME captured states (``[L + 1, B, T, D]`` per batch of 32 left-padded prompts,
depth 0 = embeddings): layerscope's :func:`layerscope.metrics.prompt_entropy` on the whole padded batch
(all depths, all prompts in one batched eigendecomposition) vs, for every prompt and every depth,
the real tokens centred and row-normalised in NumPy and ``np.linalg.eigvalsh`` of the ``T x T`` Gram.
Only the metric is timed (the forward passes are shared).  The per-depth means must agree to 1e-6.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import layerscope as ls
from layerscope.datasets import load_corpus
from layerscope.methods.layer_by_layer import iter_depth_states
from layerscope.metrics import prompt_entropy


def benchmark_prompts(n_prompts: int = 1000, max_words: int = 40) -> list[str]:
    """Corpus lines (at most ``max_words`` words), then truncated variants (dropping the first
    1, 2, ... words) until there are ``n_prompts``."""
    lines = [line.split()[:max_words] for line in load_corpus()]
    prompts: list[str] = []
    shift = 0
    while len(prompts) < n_prompts:
        prompts += [" ".join(words[shift:]) for words in lines if len(words) - shift >= 8]
        shift += 1
    return prompts[:n_prompts]


def numpy_prompt_entropy(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reference: ``states [L + 1, B, T, D]``, ``mask [B, T]`` -> per-depth sum over prompts and count."""
    n_depths, batch = states.shape[:2]
    sums, count = np.zeros(n_depths), 0
    for b in range(batch):
        real = mask[b]
        if real.sum() < 2:
            continue
        count += 1
        for d in range(n_depths):
            Z = states[d, b, real].astype(np.float64)
            Z = Z - Z.mean(axis=0, keepdims=True)
            norms = np.linalg.norm(Z, axis=1, keepdims=True)
            Z = np.divide(Z, norms, out=np.zeros_like(Z), where=norms > 0)
            lam = np.clip(np.linalg.eigvalsh(Z @ Z.T), 0.0, None)
            p = lam / lam.sum()
            p = p[p > 0]
            sums[d] += -(p * np.log(p)).sum()
    return sums, count


def bench_prompt_entropy(model: ls.Model, n_prompts: int = 1000, batch_size: int = 32) -> dict:
    prompts = benchmark_prompts(n_prompts)
    ours_s = theirs_s = 0.0
    ours_sum = theirs_sum = None
    ours_n = theirs_n = 0
    tokens = 0
    for states, mask in iter_depth_states(model, prompts, batch_size, progress=False):
        states, mask = states.float().cpu(), mask.cpu()
        tokens += int(mask.sum())
        start = time.perf_counter()
        h = prompt_entropy(states, mask, reduction="none")  # [L + 1, B], NaN = skipped
        ours_s += time.perf_counter() - start
        s = torch.nansum(h, dim=-1).numpy()
        ours_sum = s if ours_sum is None else ours_sum + s
        ours_n += int((~torch.isnan(h[0])).sum())

        np_states, np_mask = states.numpy(), mask.numpy()
        start = time.perf_counter()
        s, n = numpy_prompt_entropy(np_states, np_mask)
        theirs_s += time.perf_counter() - start
        theirs_sum = s if theirs_sum is None else theirs_sum + s
        theirs_n += n
    ours, theirs = ours_sum / ours_n, theirs_sum / theirs_n
    max_diff = float(np.abs(ours - theirs).max())
    return {
        "benchmark": "prompt entropy, all depths",
        "prompts": len(prompts),
        "tokens": tokens,
        "depths": len(ours),
        "layerscope_s": ours_s,
        "numpy_per_prompt_s": theirs_s,
        "ratio": ours_s / theirs_s,
        "max_abs_diff": max_diff,
        "agree_1e-6": max_diff <= 1e-6 and ours_n == theirs_n,
        "target": "<= 1, agree",
    }


def main() -> None:
    import argparse

    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000, help="number of prompts (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per forward chunk (default: 32)")
    args = parser.parse_args()
    row = bench_prompt_entropy(ls.load(progress=False), args.prompts, args.batch_size)
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}; ratio = layerscope_s / numpy_per_prompt_s")
    print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        f"ratio {row['ratio']:.4f} (layerscope {row['layerscope_s']:.2f} s vs NumPy {row['numpy_per_prompt_s']:.2f} s)"
    )


if __name__ == "__main__":
    main()
