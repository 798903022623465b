"""Peak memory of the patching sweep vs one forward pass with every layer's states captured.

Method: the peak of live tensor memory during the call, above what was live before it (weights and
earlier results excluded). On CPU it comes from the PyTorch profiler with ``profile_memory=True``:
every allocation and free of the CPU allocator is an event with a byte count, and the peak is the
maximum of their running sum in time order (exact for tensors; Python objects are not counted, and
they are small here). Peak RSS was tried first and dropped: Linux updates RSS counters in batches,
so at the few-MB scale of these workloads it is noise. On CUDA the harness reads
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.

Workloads (the resid_post patching grid of ``benchmarks/patching.py``):
- ``forward``: ``model.run(corrupt, capture="resid_post")`` with all logits (the reference);
- ``sweep``: the full grid with ``batch_budget`` = the engine's own estimate of that reference
  forward (``row_bytes(model, T, logits_positions=T, captured_states=L)``), half of it, and none.
  The sweep's budget covers what it holds throughout (the clean states, the corrupt run's start
  states and its KV cache) plus one forward chunk, whose rows are limited to what is left.
"""

from __future__ import annotations

import torch

from layerscope.engine.chunking import row_bytes
from layerscope.patching import activation_patching


def peak_bytes(fn, device: torch.device) -> int:
    """Peak of tensor memory allocated by ``fn()`` above what was live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        del result
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def bench_memory(model, pairs: dict[str, tuple[str, str]], answer: str, wrong: str, log=print) -> list[dict]:
    rows = []
    for pair, (clean, corrupt) in pairs.items():
        seq_len = model.tokenize(corrupt).length
        forward = peak_bytes(lambda corrupt=corrupt: model.run(corrupt, capture="resid_post"), model.device)
        estimate = row_bytes(model, seq_len, logits_positions=seq_len, captured_states=model.n_layers)
        budgets = (estimate, estimate // 2, None) if seq_len <= 16 else (estimate, estimate // 2)  # None: slow
        for budget in budgets:
            sweep = peak_bytes(
                lambda clean=clean, corrupt=corrupt, budget=budget: activation_patching(
                    model, clean, corrupt, answer, wrong, batch_budget=budget, progress=False
                ),
                model.device,
            )
            share = "" if budget is None else " (= forward estimate)" if budget == estimate else " (= half of it)"
            label = "none" if budget is None else f"{budget / 1e6:.2f}MB{share}"
            log(f"  memory {pair} budget {label}: sweep {sweep / 1e6:.2f} MB, forward {forward / 1e6:.2f} MB")
            rows.append(
                {
                    "benchmark": f"sweep peak memory {pair}",
                    "baseline": "one forward, all states captured",
                    "batch_budget": label,
                    "layerscope_MB": sweep / 1e6,
                    "baseline_MB": forward / 1e6,
                    "ratio": sweep / max(forward, 1),
                    "target": "<= 1.5",
                }
            )
    return rows
