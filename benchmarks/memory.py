"""Peak memory of the patching sweep vs one forward pass with every layer's states captured.

Method: the peak of live tensor memory during the call, above what was live before it (weights and
earlier results excluded). On CPU a ``TorchDispatchMode`` sees every aten op: each output storage
that is not one of the op's inputs' (a new allocation, not a view or an in-place write) is added when
it appears and subtracted when Python frees it (``weakref.finalize`` on the storage), and the peak
of that running sum is reported. Scratch buffers inside a kernel are not seen. It agrees with the
PyTorch profiler's allocator events (``profile_memory=True``) on the short pair (2.68 MB for the
reference forward either way); the profiler was dropped because its event list for the long sweep
does not fit in memory. Peak RSS was tried first and dropped too: Linux updates RSS counters in
batches, so at the few-MB scale of these workloads it is noise. On CUDA the harness reads
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.

Workloads (the resid_post patching grid of ``benchmarks/patching.py``):
- ``forward``: ``model.run(corrupt, capture="resid_post")`` with all logits (the reference);
- ``sweep``: the full grid with ``batch_budget`` = the target itself (1.5x the measured peak of the
  reference forward: the setting of the headline speed numbers in ``patching.py``), the engine's own
  estimate of that forward (``row_bytes(model, T, logits_positions=T, captured_states=L)``), and none.
  The sweep's budget covers what it holds throughout (the clean states, the corrupt run's start
  states and its KV cache) plus one forward chunk, whose rows are limited to what is left.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from layerscope.engine.chunking import row_bytes
from layerscope.methods.patching import activation_patching


class _PeakTracker(TorchDispatchMode):
    """Counts every storage an aten op allocates (an output whose storage is none of its inputs') until
    Python frees it (storages keep their Python object, so ``weakref.finalize`` fires on free)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self.seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in inputs or key in self.seen:
                continue
            self.seen.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, storage.nbytes())
        return out


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
    tracker = _PeakTracker()
    with tracker:
        result = fn()
    del result
    return tracker.peak


def reference_forward(model, corrupt: str):
    """The reference of the memory target: one forward with every ``resid_post`` captured (all logits)."""
    return model.run(corrupt, capture="resid_post")


def target_budget(model, corrupt: str) -> int:
    """The memory target itself as the sweep's budget: 1.5x the measured peak of the reference forward."""
    return int(1.5 * peak_bytes(lambda: reference_forward(model, corrupt), model.device))


def forward_budget(model, seq_len: int) -> int:
    """The engine's estimate of the reference forward (all logits, every ``resid_post`` captured):
    the budget at which the sweep must stay within 1.5x of that forward's measured peak."""
    return row_bytes(model, seq_len, logits_positions=seq_len, captured_states=model.n_layers)


def bench_memory(model, pairs: dict[str, tuple[str, str]], answer: str, wrong: str, log=print) -> list[dict]:
    rows = []
    for pair, (clean, corrupt) in pairs.items():
        seq_len = model.tokenize(corrupt).length
        forward = peak_bytes(lambda corrupt=corrupt: reference_forward(model, corrupt), model.device)
        estimate = forward_budget(model, seq_len)
        target = int(1.5 * forward)
        budgets = (target, estimate, None) if seq_len <= 16 else (target, estimate)  # None: slow
        for budget in budgets:
            sweep = peak_bytes(
                lambda clean=clean, corrupt=corrupt, budget=budget: activation_patching(
                    model, clean, corrupt, answer, wrong, batch_budget=budget, progress=False
                ),
                model.device,
            )
            share = (
                ""
                if budget is None
                else " (= the forward's estimate)"
                if budget == estimate
                else " (= 1.5x the forward's peak: the target)"
            )
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
