"""Capture every layer's residual stream vs a plain HF forward with output_hidden_states.

64 prompts of exactly 32 tokens. Both run on the same prompts in the same process, interleaved,
and the report is the ratio of medians (machines here are shared and noisy: absolute times mean little).
"""

from __future__ import annotations

import statistics
import time

import torch

import layerscope as ls
from layerscope.datasets import load_corpus
from layerscope.engine.batch import from_ids


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_capture(model: ls.Model, n_prompts: int = 64, n_tokens: int = 32, repeats: int = 7) -> dict:
    # exactly `n_tokens` tokens per prompt (corpus lines cut at the token level, so no padding)
    lines = [line for line in load_corpus() if len(model.tokenizer(line)["input_ids"]) >= n_tokens]
    lines = (lines * (n_prompts // max(len(lines), 1) + 1))[:n_prompts]
    rows = [model.tokenizer(line)["input_ids"][:n_tokens] for line in lines]
    batch = from_ids(model.tokenizer, rows, lines, [None] * len(rows), model.device)
    inputs = batch.model_inputs()

    def plain():
        with torch.no_grad():
            return model.hf(**inputs, output_hidden_states=True).hidden_states

    def layerscope_capture():
        return model.run(batch, capture="resid_post").stack("resid_post")

    plain(), layerscope_capture()  # warm-up
    ours, theirs = [], []
    for _ in range(repeats):  # interleave so drift hits both equally
        ours += _time(layerscope_capture, 1)
        theirs += _time(plain, 1)
    ratio = statistics.median(ours) / statistics.median(theirs)
    return {
        "benchmark": "capture all layers",
        "prompts": n_prompts,
        "tokens": batch.length,
        "layerscope_s": statistics.median(ours),
        "hf_hidden_states_s": statistics.median(theirs),
        "ratio": ratio,
        "target": "<= 1.1",
    }
