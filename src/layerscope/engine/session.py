"""The hook session: the only place where layerscope touches a model's modules.

Blocks are wrapped by replacing their ``forward`` (an instance attribute, restored on exit) rather
than with ``register_forward_hook``, because a wrapper can also *skip* a block (start at layer l),
*replace* its input (resume from given states) and *repeat* a range of blocks (loops) without
per-architecture code: the model's own forward still builds masks, rotary embeddings and caches,
and each block is called with exactly the arguments the model gave it. The attention and MLP
sub-blocks use ordinary forward hooks. Everything is undone in ``__exit__``, so the model is clean
after an exception, a KeyboardInterrupt or an early stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from layerscope.engine.plan import Plan
from layerscope.engine.stagger import Stagger
from layerscope.errors import InterventionError


@dataclass(frozen=True)
class Loop:
    """Run blocks ``start..stop-1`` ``times`` times in a row (``times=1`` is the plain model)."""

    start: int
    stop: int
    times: int

    def contains(self, layer: int) -> bool:
        return self.start <= layer < self.stop


def _marked(fn):
    fn._layerscope_hook = True
    return fn


def _unwrap(block) -> None:
    """Put back what a layerscope wrapper replaced (the block's own instance forward, or none)."""
    wrapper = block.__dict__.get("forward")
    had_own, saved = getattr(wrapper, "_layerscope_saved", (False, None))
    if had_own:
        block.forward = saved
    else:
        block.__dict__.pop("forward", None)


def remove_stale(adapter) -> int:
    """Undo wrappers and hooks that an earlier run left behind (a signal between two lines of
    Python that no handler could defer, a thread killed mid-run). Returns how many were removed."""
    removed = 0
    for block in adapter.blocks:
        while hasattr(block.__dict__.get("forward"), "_layerscope_saved"):
            _unwrap(block)
            removed += 1
    for module in [m for m in (*adapter.attn, *adapter.mlp) if m is not None]:
        for key, hook in list(module._forward_hooks.items()):
            if getattr(hook, "_layerscope_hook", False):
                del module._forward_hooks[key]
                removed += 1
    return removed


@contextmanager
def signals_deferred():
    """Hold a Ctrl-C (SIGINT) that arrives while the model is being changed: yields a list that is
    non-empty if one came, for the caller to raise once the model is consistent again. Only the
    main thread receives signals; elsewhere this does nothing."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):  # no signal handling here (e.g. an embedded interpreter)
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class HookSession:
    """Installs the wrappers and hooks for one plan; use as a context manager.

    Attributes:
        captured: ``{(site, layer, iteration): [B, T, D]}`` (``[B, P, D]`` with capture positions).
    """

    def __init__(
        self,
        adapter,
        plan: Plan,
        capture: dict[str, set[int]],
        mask: torch.Tensor,
        *,
        start_layer: int = 0,
        start_states: torch.Tensor | None = None,
        loop: Loop | None = None,
        capture_index: torch.Tensor | None = None,
        stagger: Stagger | None = None,
        grad: bool = False,
    ):
        self.adapter = adapter
        self.plan = plan
        self.capture = capture
        self.mask = mask
        self.start_layer = start_layer
        self.start_states = start_states
        self.loop = loop
        self.capture_index = capture_index  # [B, P] positions to keep, or None for all
        self.stagger = stagger  # per-row start layers (rows join the batch as it goes up)
        self.grad = grad  # keep captures in the autograd graph
        self.captured: dict[tuple[str, int, int], torch.Tensor] = {}
        self._restore: list[Callable[[], None]] = []
        self._iteration: dict[int, int] = {}
        self._replays: dict[int, Callable] = {}
        self._current: tuple[int, int] = (0, 0)

    # ---- install / remove --------------------------------------------------------------
    def __enter__(self) -> HookSession:
        with signals_deferred() as interrupted:
            try:
                remove_stale(self.adapter)
                self._install()
            except BaseException:
                self._remove()
                raise
            if interrupted:  # a Ctrl-C during the install: nothing runs, nothing stays
                self._remove()
        if interrupted:
            raise KeyboardInterrupt
        return self

    def __exit__(self, *exc) -> None:
        with signals_deferred() as interrupted:
            self._remove()
        if interrupted and not exc[0]:
            raise KeyboardInterrupt

    def _install(self) -> None:
        n = self.adapter.n_layers
        layers_needed = set(self.plan.layers()) | {l for ls in self.capture.values() for l in ls}
        sub_sites = {site for site, _ in self.plan.ops} | set(self.capture)
        if self.start_layer > 0 or self.start_states is not None:
            layers_needed |= set(range(self.start_layer + 1))
        if self.loop is not None:
            layers_needed |= set(range(self.loop.start, self.loop.stop))
        if self.stagger is not None:
            layers_needed = set(range(n))
        for layer in sorted(layers_needed):
            self._wrap_block(layer)
        for site, modules in (("attn_out", self.adapter.attn), ("mlp_out", self.adapter.mlp)):
            if site not in sub_sites:
                continue
            for layer in range(n):
                if self.plan.at(site, layer) or layer in self.capture.get(site, ()):
                    if modules[layer] is None:
                        raise InterventionError(f"site {site} is not available at layer {layer} of this model")
                    hook = self._sub_hook(site)
                    handle = modules[layer].register_forward_hook(hook)
                    self._restore.append(handle.remove)

    def _remove(self) -> None:
        # each restore is idempotent and is dropped only once it has run, so a removal that an
        # interrupt cut short can simply run again
        while self._restore:
            self._restore[-1]()
            self._restore.pop()

    def _wrap_block(self, layer: int) -> None:
        block = self.adapter.blocks[layer]
        had_own = "forward" in block.__dict__
        saved = block.__dict__.get("forward")
        original = block.forward

        def forward(*args, **kwargs):
            if args:
                hidden, rest = args[0], args[1:]
            else:
                hidden, rest = kwargs.pop("hidden_states"), ()

            def call(h: torch.Tensor):
                return original(h, *rest, **kwargs)

            out_holder: list = []
            new_hidden = self._block(layer, hidden, call, out_holder)
            return self._pack(out_holder[0] if out_holder else None, new_hidden)

        forward._layerscope_saved = (had_own, saved)  # lets a later run undo it if this one never could

        def restore() -> None:
            if block.__dict__.get("forward") is forward:
                _unwrap(block)

        self._restore.append(restore)  # before the wrapper goes in: no moment with a wrapper and no restore
        block.forward = forward

    # ---- per-forward state -------------------------------------------------------------
    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Call before each forward pass (generation calls it once per step)."""
        self._iteration.clear()
        self._replays.clear()
        if mask is not None:
            self.mask = mask

    # ---- the block wrapper ----------------------------------------------------------------
    def _block(self, layer: int, hidden: torch.Tensor, call: Callable, out_holder: list) -> torch.Tensor:
        iteration = self._iteration.get(layer, 0)
        self._iteration[layer] = iteration + 1
        if self.loop is not None and self.loop.contains(layer) and iteration == 0:
            self._replays[layer] = call
        if self.stagger is not None:
            running = self.stagger.enter(layer, hidden)
            if running is None:
                return hidden  # no row has started yet
            hidden = running
        elif layer < self.start_layer:
            return hidden  # skipped: block `start_layer` replaces this with the given states
        elif layer == self.start_layer and iteration == 0 and self.start_states is not None:
            hidden = self.start_states
        self._current = (layer, iteration)
        hidden = self._site("resid_pre", layer, iteration, hidden)
        out = call(hidden)
        out_holder.append(out)
        hidden = out[0] if isinstance(out, tuple | list) else out
        hidden = self._site("resid_post", layer, iteration, hidden)
        if self.stagger is not None:  # never looped (refused by run)
            return self.stagger.leave(layer, hidden)
        loop = self.loop
        if loop is not None and layer == loop.stop - 1 and iteration == 0:
            for _ in range(1, loop.times):
                for inner in range(loop.start, loop.stop):
                    hidden = self._block(inner, hidden, self._replays[inner], [])
        return hidden

    def _pack(self, original_out, hidden: torch.Tensor):
        """The block's output with ``hidden`` in place of its first element; a skipped block (no
        output) returns the structure the self-check saw (RWKV's 3-tuple, OpenAI-GPT's list)."""
        if isinstance(original_out, tuple):
            return (hidden,) + original_out[1:]
        if isinstance(original_out, list):
            return [hidden, *original_out[1:]]
        if original_out is None:
            kind, size = self.adapter.block_output
            if kind == "tuple":
                return (hidden,) + (None,) * (size - 1)
            if kind == "list":
                return [hidden] + [None] * (size - 1)
        return hidden

    def _sub_hook(self, site: str):
        @_marked
        def hook(module, args, output):
            layer, iteration = self._current
            hidden = output[0] if isinstance(output, tuple) else output
            new = self._site(site, layer, iteration, hidden)
            if new is hidden:
                return None
            return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

        return hook

    def _site(self, site: str, layer: int, iteration: int, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.shape[0]  # fewer than the batch while a staggered batch is still growing
        mask = self.mask if self.mask.shape[0] == rows else self.mask[:rows]
        for op in self.plan.at(site, layer):
            hidden = op.apply(hidden, mask, layer, iteration)
        if layer in self.capture.get(site, ()):
            kept = hidden
            if self.capture_index is not None:
                index = self.capture_index[:rows].unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
                kept = hidden.gather(1, index)
            if self.grad and kept.requires_grad:
                kept.retain_grad()  # so that result.grad(site, layer) answers after backward()
            self.captured[(site, layer, iteration)] = kept if self.grad else kept.detach()
        return hidden
