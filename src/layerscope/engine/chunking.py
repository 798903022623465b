"""Split batched work into chunks that fit a memory budget, with a progress bar.

Every sweeping command takes ``--batch-budget`` (e.g. ``512MB``): the most memory the
activations of one forward chunk may take. The estimate counts what a transformer forward
keeps alive per row (residual copies, the MLP's hidden layer, attention scores, logits,
captured states, a kept KV cache); weights are not part of the budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from layerscope.errors import LayerscopeError
from layerscope.progress import bar

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
DEFAULT_BUDGET = "1GB"


def parse_budget(budget: str | int | float | None) -> int | None:
    """``"512MB"`` / ``"2GiB"`` / a number of bytes -> bytes (None stays None: no limit)."""
    if budget is None:
        return None
    if isinstance(budget, int | float):
        value = int(budget)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(budget))
        unit = match.group(2).upper() if match else ""
        if not match or unit not in _UNITS:
            raise LayerscopeError(
                f"cannot read the memory budget {budget!r}: write a number with a unit, e.g. 512MB, 2GB or 1GiB"
            )
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise LayerscopeError(f"the memory budget must be positive, got {budget!r}")
    return value


def row_bytes(
    model,
    seq_len: int,
    *,
    logits_positions: int = 1,
    captured_states: int = 0,
    keep_cache: bool = False,
    cached_positions: int = 0,
    cached_layers: int | None = None,
) -> int:
    """Estimated activation memory of one batch row of a forward pass over ``seq_len`` tokens.

    Args:
        logits_positions: positions whose logits are kept (``seq_len`` for ``logits="all"``).
        captured_states: number of ``[T, D]`` states captured per row (e.g. L + 1 for every depth).
        keep_cache: whether the KV cache is returned.
        cached_positions: positions of a reused KV prefix that each row carries (prefix reuse
            repeats the prefix's cache once per row).
        cached_layers: how many layers' caches of ``cached_positions`` a row holds at once
            (default: every layer; a staggered sweep widens one block's at a time).
    """
    config = model.hf.config.get_text_config() if hasattr(model.hf.config, "get_text_config") else model.hf.config
    d = model.d_model
    inner = int(getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d)
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 1)
    element = model.dtype.itemsize if hasattr(model.dtype, "itemsize") else 4
    per_row = seq_len * (4 * d + 3 * inner) + heads * seq_len * seq_len
    per_row += logits_positions * model.vocab_size + captured_states * seq_len * d
    heads_kv = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or d // max(heads, 1))
    kv = 2 * model.n_layers * heads_kv * head_dim  # K and V of every layer, per position
    per_row += 2 * (cached_layers or model.n_layers) * heads_kv * head_dim * cached_positions
    if cached_positions:  # attending over the cache: its K and V repeated to every head, and the scores
        per_row += (2 * heads * head_dim + heads * seq_len) * cached_positions
    if keep_cache:
        per_row += kv * seq_len
    return int(per_row * element)


def rows_per_chunk(budget: str | int | None, bytes_per_row: int, n_rows: int) -> int:
    """How many rows fit ``budget`` (at least 1; all of them when there is no budget)."""
    limit = parse_budget(budget)
    if limit is None:
        return max(n_rows, 1)
    return max(1, min(n_rows, limit // max(bytes_per_row, 1)))


def chunks(n_rows: int, size: int, *, desc: str = "", progress: bool = True) -> Iterator[slice]:
    """Slices ``[start, start + size)`` covering ``range(n_rows)``, with a progress bar if more than one."""
    if size < 1:
        raise LayerscopeError(f"chunk size must be >= 1, got {size}")
    starts = range(0, n_rows, size)
    for start in bar(starts, progress=progress, desc=desc or None, leave=False):
        yield slice(start, min(start + size, n_rows))
