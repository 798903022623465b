"""Scaling curves: time and peak memory of the exact sweep and of attribution patching, against prompt
length and against the number of pairs, beside the batched peers (``peers_batched.py``).

**Length** (10 to 512 tokens): entity-first pairs ("The Eiffel Tower" / "The Colosseum", then filler
words, then "is located in the city of"): the prompts differ at their second token, the worst case
for the sweep (nothing to skip). The exact sweep's arithmetic grows as ~L^2 T^2 / 4, so the whole
grid runs up to ``full_max`` tokens only; every length also runs one layer (``resid_post[20]``, the
blocks above it on positions p..T-1), and the whole grid beyond ``full_max`` is **extrapolated** from
it by the ratio of the two grids' work (sum over cells of blocks x positions run; the ratio measured
at ``full_max`` is reported beside it). Attribution always covers the whole grid. Every tool runs at
the headline budget (``memory.target_budget``: 1.5x the peak of one forward with every state
captured). Batched peers time a sample of cells (their cost per cell is constant) for the one-layer
grid and the whole grid (x L, exact by construction).

**Pairs** (1 to 100 shipped pairs, ``pair_sweep`` at layers 0, 10, 20): layerscope's ``pair_sweep``
for each N; attribution and the HF batched peer loop over the pairs (their time for N pairs is the
sum of their first N pairs' times, measured once each).

Memory is measured in separate runs (``memory.peak_bytes``), never inside a timed one.
"""

from __future__ import annotations

import time
from pathlib import Path

from memory import peak_bytes, reference_forward, target_budget
from patching import ANSWER, WRONG

from layerscope.methods.patching import activation_patching, attribution_patching
from layerscope.methods.patching.api import start_layer_of

LENGTHS = (10, 32, 64, 128, 256, 512)
PAIR_COUNTS = (1, 5, 10, 25, 50, 100)
ONE_LAYER = (20,)
PAIR_LAYERS = (0, 10, 20)
FILLER_TEXT = (
    "which my grandmother and I wanted to see when we travelled by train across Europe during a long summer "
    "holiday visiting small villages old churches quiet museums and crowded markets full of fresh fruit and "
    "flowers in the early morning light while the streets were still empty and the cafes were just opening"
)
FILLER = FILLER_TEXT.split(" ")
TAIL = " is located in the city of"


def length_pair(model, n_tokens: int) -> tuple[str, str]:
    """An entity-first pair of exactly ``n_tokens`` tokens (filler words added until it fits)."""
    entities = ("The Eiffel Tower", "The Colosseum")

    def length(words: list[str]) -> int:
        return model.tokenize(entities[0] + "".join(" " + w for w in words) + TAIL).length

    words: list[str] = []
    i = 0
    while length(words) < n_tokens:
        word = FILLER[i % len(FILLER)]
        i += 1
        if length([*words, word]) <= n_tokens:
            words.append(word)
        if i > 20 * n_tokens:
            raise RuntimeError(f"cannot build a {n_tokens}-token pair")
    pair = tuple(e + "".join(" " + w for w in words) + TAIL for e in entities)
    assert all(model.tokenize(p).length == n_tokens for p in pair), n_tokens
    return pair


def grid_work(n_layers: int, seq_len: int, layers) -> int:
    """Blocks x positions the exact sweep runs for ``resid_post`` at ``layers``, every position (no skip)."""
    return sum(
        (n_layers - start_layer_of("resid_post", l, n_layers)) * (seq_len - p) for l in layers for p in range(seq_len)
    )


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peer_time(tool, cells, n_cells: int) -> float:
    """A batched peer's time for ``n_cells`` cells, from the sampled ``cells`` (constant cost per cell)."""
    return _timed(lambda: tool.cells(cells)) / len(cells) * n_cells


def scaling_length(model, tools, lengths=LENGTHS, full_max: int = 64, peer_cells: int = 8, log=print) -> list[dict]:
    """One row per length: seconds and peak MB of every tool (see the module docstring)."""
    rows = []
    n_layers = model.n_layers
    every = range(n_layers)
    for n in lengths:
        clean, corrupt = length_pair(model, n)
        budget = target_budget(model, corrupt)

        def exact(layers, clean=clean, corrupt=corrupt, budget=budget):
            return activation_patching(
                model, clean, corrupt, ANSWER, WRONG, layers=list(layers), batch_budget=budget, progress=False
            )

        def attribution(clean=clean, corrupt=corrupt):
            return attribution_patching(model, clean, corrupt, ANSWER, WRONG)

        row = {"tokens": n, "budget_MB": budget / 1e6, "load": _load()}
        row["forward_MB"] = peak_bytes(lambda corrupt=corrupt: reference_forward(model, corrupt), model.device) / 1e6
        ratio = grid_work(n_layers, n, every) / grid_work(n_layers, n, ONE_LAYER)
        row["work_ratio"] = ratio
        start = time.perf_counter()
        ours = exact(ONE_LAYER).set_index(["layer", "position"])["value"]
        row["exact_1layer_s"] = time.perf_counter() - start
        if n <= full_max:
            row["exact_full_s"] = _timed(lambda: exact(every))
            row["exact_full_measured"] = True
        else:
            row["exact_full_s"] = row["exact_1layer_s"] * ratio
            row["exact_full_measured"] = False
        row["attribution_s"] = _timed(attribution)
        grid = [(l, p) for l in ONE_LAYER for p in range(n)]
        for tool in tools:
            tool.prepare(clean, corrupt, budget)
            cells = grid[:: max(1, len(grid) // peer_cells)][:peer_cells]
            start = time.perf_counter()
            values = tool.cells(cells)
            per_cell = (time.perf_counter() - start) / len(cells)
            row[f"{tool.name}_1layer_s"] = per_cell * len(grid)
            row[f"{tool.name}_full_s"] = per_cell * n * n_layers
            row[f"{tool.name}_diff"] = max(abs(v - ours[c]) for c, v in zip(cells, values, strict=True))
            assert row[f"{tool.name}_diff"] <= 1e-4, f"{tool.name} disagrees with layerscope at {n} tokens"
            chunk = grid[: min(tool.rows, len(grid))]
            if tool.name == "hf-batched":
                row[f"{tool.name}_MB"] = (
                    peak_bytes(lambda tool=tool, chunk=chunk: tool.cells(chunk), model.device) / 1e6
                )
        row["exact_1layer_MB"] = peak_bytes(lambda: exact(ONE_LAYER), model.device) / 1e6
        if n <= min(full_max, 32):
            row["exact_full_MB"] = peak_bytes(lambda: exact(every), model.device) / 1e6
        row["attribution_MB"] = peak_bytes(attribution, model.device) / 1e6
        log(f"# length {row}")
        rows.append(row)
    return extrapolate(rows)


def extrapolate(rows: list[dict]) -> list[dict]:
    """The whole grid's time where it was not run: the one-layer time x a ratio between two bounds.

    ``exact_full_s`` uses the work ratio (an upper bound: the one-layer sweep's fixed costs weigh
    more than the whole grid's); ``exact_full_low_s`` the whole-grid / one-layer ratio measured at
    the longest measured length (a lower bound: that share of fixed costs shrinks with length).
    """
    measured = [r for r in rows if r["exact_full_measured"]]
    if not measured:
        return rows
    seen = measured[-1]["exact_full_s"] / measured[-1]["exact_1layer_s"]
    for r in rows:
        if not r["exact_full_measured"]:
            r["exact_full_s"] = r["exact_1layer_s"] * r["work_ratio"]
            r["exact_full_low_s"] = r["exact_1layer_s"] * seen
            r["measured_ratio_used"] = seen
    return rows


def scaling_pairs(model, counts=PAIR_COUNTS, peer=None, log=print) -> list[dict]:
    """One row per number of pairs: ``pair_sweep`` seconds and peak MB; attribution and the peer summed."""
    from patching import _token

    from layerscope.methods.patching.pairs import load_pairs, pair_sweep, usable

    shipped = load_pairs()
    keep, _ = usable(model, shipped)
    pairs = [shipped[i] for i in keep][: max(counts)]
    attribution_s, peer_s, peer_diff = [], [], 0.0
    for pair in pairs:
        args = (model, pair["clean"], pair["corrupt"], pair["answer"], pair["wrong"])
        attribution_s.append(_timed(lambda args=args: attribution_patching(*args, layers=list(PAIR_LAYERS))))
        if peer is not None:
            start = time.perf_counter()
            peer.prepare(pair["clean"], pair["corrupt"], None)
            peer.a, peer.w = _token(model, pair["answer"]), _token(model, pair["wrong"])
            n = model.tokenize(pair["corrupt"]).length
            cells = [(l, p) for l in PAIR_LAYERS for p in range(n)]
            values = peer.cells(cells)
            peer_s.append(time.perf_counter() - start)
            if len(peer_s) <= 3:  # the values: layerscope's sweep of the same pair
                ours = activation_patching(*args, layers=list(PAIR_LAYERS), progress=False)
                ours = ours.set_index(["layer", "position"])["value"]
                peer_diff = max(peer_diff, max(abs(v - ours[c]) for c, v in zip(cells, values, strict=True)))
                assert peer_diff <= 1e-4, f"{peer.name} disagrees with layerscope's pair sweep: {peer_diff:.2e}"
    rows = []
    for n in counts:
        chosen = pairs[:n]

        def sweep(chosen=chosen):
            return pair_sweep(model, chosen, layers=list(PAIR_LAYERS), progress=False)

        row = {"pairs": n, "load": _load(), "exact_s": _timed(sweep), "attribution_s": sum(attribution_s[:n])}
        row["exact_MB"] = peak_bytes(sweep, model.device) / 1e6
        if peer is not None:
            row[f"{peer.name}_s"] = sum(peer_s[:n])
            row[f"{peer.name}_diff"] = peer_diff
        log(f"# pairs {row}")
        rows.append(row)
    return rows


def _load() -> float:
    import os

    return round(os.getloadavg()[0], 2)


def plot(length_rows: list[dict], pair_rows: list[dict], folder: Path) -> list[Path]:
    """Two PNGs: time and memory against prompt length, and against the number of pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = [r["tokens"] for r in length_rows]
    measured = [r for r in length_rows if r["exact_full_measured"]]
    extrapolated = [r for r in length_rows if not r["exact_full_measured"]]
    t_ax.plot([r["tokens"] for r in measured], [r["exact_full_s"] for r in measured], "o-", c="C0",
              label="layerscope exact, whole grid")  # fmt: skip
    if extrapolated:
        tail = measured[-1:] + extrapolated
        low = [r.get("exact_full_low_s", r["exact_full_s"]) for r in tail]
        t_ax.fill_between([r["tokens"] for r in tail], low, [r["exact_full_s"] for r in tail], color="C0", alpha=0.15)
        t_ax.plot([r["tokens"] for r in tail], [r["exact_full_s"] for r in tail], "o--", c="C0", mfc="none",
                  label="  (extrapolated from one layer: band)")  # fmt: skip
    t_ax.plot(x, [r["exact_1layer_s"] for r in length_rows], "s-", c="C1", label="layerscope exact, resid_post[20]")
    t_ax.plot(x, [r["attribution_s"] for r in length_rows], "^-", c="C2", label="attribution patching, whole grid")
    for i, peer in enumerate(
        p for p in ("hf-batched", "nnsight-batched", "tl-batched") if f"{p}_full_s" in length_rows[0]
    ):
        t_ax.plot(x, [r[f"{peer}_full_s"] for r in length_rows], "x:", c=f"C{3 + i}", label=f"{peer}, whole grid")
    t_ax.set(xscale="log", yscale="log", xlabel="prompt tokens", ylabel="seconds (1 CPU thread)",
             title="time vs prompt length (entity-first pairs)")  # fmt: skip
    m_ax.plot(x, [r["forward_MB"] for r in length_rows], "k-", label="one forward, every state captured")
    m_ax.plot(x, [1.5 * r["forward_MB"] for r in length_rows], "k:", label="1.5x that (the budget)")
    m_ax.plot(x, [r["exact_1layer_MB"] for r in length_rows], "s-", c="C1", label="layerscope exact, resid_post[20]")
    full_mem = [r for r in length_rows if "exact_full_MB" in r]
    m_ax.plot([r["tokens"] for r in full_mem], [r["exact_full_MB"] for r in full_mem], "o-", c="C0",
              label="layerscope exact, whole grid")  # fmt: skip
    m_ax.plot(x, [r["attribution_MB"] for r in length_rows], "^-", c="C2", label="attribution patching")
    if "hf-batched_MB" in length_rows[0]:
        m_ax.plot(x, [r["hf-batched_MB"] for r in length_rows], "x:", c="C3", label="hf-batched (one chunk)")
    m_ax.set(xscale="log", yscale="log", xlabel="prompt tokens", ylabel="peak MB above the weights",
             title="peak memory vs prompt length")  # fmt: skip
    _finish(t_ax, m_ax, x)
    fig.tight_layout()
    written.append(folder / "scaling_length.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = [r["pairs"] for r in pair_rows]
    t_ax.plot(x, [r["exact_s"] for r in pair_rows], "o-", c="C0", label="layerscope pair_sweep (exact)")
    t_ax.plot(x, [r["attribution_s"] for r in pair_rows], "^-", c="C2", label="attribution patching, per pair")
    if "hf-batched_s" in pair_rows[0]:
        t_ax.plot(x, [r["hf-batched_s"] for r in pair_rows], "x:", c="C3", label="hf-batched, per pair")
    t_ax.set(xscale="log", yscale="log", xlabel="pairs", ylabel="seconds (1 CPU thread)",
             title="time vs pairs (resid_post at layers 0, 10, 20)")  # fmt: skip
    m_ax.plot(x, [r["exact_MB"] for r in pair_rows], "o-", c="C0", label="layerscope pair_sweep (exact)")
    m_ax.set(xscale="log", xlabel="pairs", ylabel="peak MB above the weights", title="peak memory vs pairs")
    _finish(t_ax, m_ax, x)
    fig.tight_layout()
    written.append(folder / "scaling_pairs.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def _finish(t_ax, m_ax, x: list[int]) -> None:
    """Ticks at the measured x values (plain numbers on the log axis), legends, grids."""
    from matplotlib.ticker import NullFormatter, NullLocator

    for ax in (t_ax, m_ax):
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(x, [str(v) for v in x])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")


def bench_scaling(model, lengths=LENGTHS, counts=PAIR_COUNTS, folder: Path | None = None, log=print) -> list[dict]:
    """Both curves, their plots under ``folder`` (default ``benchmarks/plots``), and their rows."""
    from peers_batched import HFBatched, NNsightBatched, TLBatched

    tools = [HFBatched(model)]
    for made in (NNsightBatched, TLBatched):
        try:
            tools.append(made(model))
        except ImportError as error:
            log(f"  {made.name} skipped: {error} (pip install -e '.[bench]')")
    length_rows = scaling_length(model, tools, lengths, log=log)
    pair_rows = scaling_pairs(model, counts, peer=HFBatched(model), log=log)
    for path in plot(length_rows, pair_rows, folder or Path(__file__).parent / "plots"):
        log(f"  wrote {path}")
    return [{"benchmark": "scaling, length", **r} for r in length_rows] + [
        {"benchmark": "scaling, pairs", **r} for r in pair_rows
    ]
