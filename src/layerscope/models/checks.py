"""The self-check at load: every assumption the engine relies on, verified on the model itself.

"Any Hugging Face model by inspection" is only true if the inspection is checked. At load the
model runs a few tiny probe forwards and each assumption is compared with the model's own
behaviour:

(a) **head**: ``unembed(resid_post[L-1])`` equals the model's logits (:mod:`layerscope.models.head`);
(b) **cache**: cached decoding equals a full recompute for two steps (with the cache keyword the
    forward takes: ``cache``, ``past_key_values`` or ``state``), and a kept cache can be cut back
    to a prefix and reused (attention KV does; SSM / recurrent states do not);
(c) **blocks**: blocks pass one ``[B, T, D]`` residual tensor, and a run that skips the lower
    blocks (start layer) equals the full run;
(d) **stagger**: a two-row run whose rows start at different blocks equals two single runs;
(e) **padding**: a left-padded row equals the same prompt alone (with explicit position ids, or
    with the model's own).

What fails is not guessed around: the engine takes an exact path without the failed shortcut
(recompute instead of a cache, one batch per start layer, prompts grouped by length), and what
cannot run at all (the logit lens without a verified head) raises the message recorded here,
naming the model class and the check. What was learned is kept per architecture and config (in
memory and under the layerscope cache), so a second load costs nothing.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from layerscope.engine.batch import from_ids
from layerscope.errors import AdapterError
from layerscope.models.adapter import _is_norm

CACHE_ARGS = ("cache", "past_key_values", "state")


@dataclass
class Capabilities:
    """What the self-check found (see the module docstring for each check).

    Attributes:
        head: dotted names of the head's modules, its scale and soft cap (None: not verified).
        cache_arg: the forward's cache keyword (None: the model keeps no cache).
        cached_decoding: (b) generation may use the cache.
        decode_mask: a cached step takes the full attention mask (False: only unpadded rows may
            use the cache, and their steps pass no mask).
        prefix_reuse: (b) a kept cache can be cut back and reused by later runs.
        start_layer: (c) runs may skip the lower blocks.
        staggered: (d) rows may start at different blocks in one batch.
        padding: (e) ``"position_ids"`` (explicit ids), ``"model"`` (the model counts positions
            itself: pass none) or ``"groups"`` (prompts of different lengths run separately).
        problems: check name -> the message a refused use raises.
    """

    head: dict | None = None
    block_output: tuple[str, int] = ("tensor", 1)
    cache_arg: str | None = None
    cached_decoding: bool = False
    decode_mask: bool = True
    prefix_reuse: bool = False
    start_layer: bool = True
    staggered: bool = True
    padding: str = "position_ids"
    problems: dict[str, str] = field(default_factory=dict)

    def require(self, check: str, model_name: str) -> None:
        """Raise the recorded refusal if ``check`` failed."""
        if check in self.problems:
            raise AdapterError(f"{model_name}: {self.problems[check]}")


_MEMORY: dict[str, Capabilities] = {}
_VERSION = "1"


def accepted_kwargs(module) -> set[str] | None:
    """The keyword names ``module.forward`` takes (None: it takes ``**kwargs``, so anything)."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _key(hf) -> str:
    import transformers

    # the code that the checks exercise is part of the key: a changed engine checks again
    here = Path(__file__).parent
    files = sorted([*here.glob("*.py"), *(here.parent / "engine").glob("*.py")])
    source = "".join(f.read_text() for f in files)
    text = "|".join([_VERSION, type(hf).__name__, hf.config.to_json_string(), transformers.__version__, source])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _disk_path(key: str) -> Path:
    from layerscope.models.loading import cache_root

    return cache_root() / "capabilities" / f"{key}.json"


def capabilities(model, use_cache: bool = True) -> Capabilities:
    """The model's capabilities: from the cache, or by running the checks."""
    key = _key(model.hf)
    if use_cache and key in _MEMORY:
        return _MEMORY[key]
    path = _disk_path(key)
    if use_cache and path.exists():
        try:
            caps = Capabilities(**json.loads(path.read_text()))
            _MEMORY[key] = caps
            return caps
        except (ValueError, TypeError, OSError):
            pass  # unreadable or from another version: check again
    caps = run_checks(model)
    _MEMORY[key] = caps
    try:
        from layerscope.results.io import write_json

        write_json(path, asdict(caps))
    except OSError:
        pass  # a read-only cache only costs the checks next time
    return caps


PROBE_TEXT = "the capital of the country is a big old city on the river and the sea"


def probe_ids(model, length: int = 5, offset: int = 0) -> torch.Tensor:
    """``[1, length]`` token ids of ordinary text for probe forwards (the first ids of a vocabulary
    are often unused control tokens, whose huge activations make every comparison noisy)."""
    ids: list[int] = []
    if model.tokenizer is not None:
        try:
            ids = model.tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        except Exception:  # noqa: BLE001 - any tokenizer trouble: fall back to plain ids
            ids = []
    special = set(getattr(model.tokenizer, "all_special_ids", None) or [])
    ids = [i for i in ids if i not in special and i < model.vocab_size]
    if len(ids) < offset + length:
        ids = [i for i in range(3, model.vocab_size) if i not in special]
    return torch.tensor([ids[offset : offset + length]], device=model.device)


def run_checks(model) -> Capabilities:
    """Run checks (a)-(e) on ``model`` (its adapter found, its head traced)."""
    caps = Capabilities()
    name = type(model.hf).__name__
    ids = probe_ids(model)
    _probe_structure(model, caps, ids)
    apply(model, caps)
    named = set(inspect.signature(model.hf.forward).parameters)
    caps.cache_arg = next((a for a in CACHE_ARGS if a in named), None) if model.is_causal else None
    model.caps = caps  # the checks below run through the engine, which reads the capabilities so far
    plain = _plain_output(model, ids)

    caps.start_layer = _check(caps, "start_layer", name, lambda: _start_layer_ok(model, ids, plain),
                              "a run that skips the lower blocks (start_layer) does not equal the full run")
    caps.staggered = caps.start_layer and _check(
        caps, "staggered", name, lambda: _staggered_ok(model, ids, plain),
        "rows that start at different blocks of one batch do not equal single runs")  # fmt: skip
    caps.padding = _padding_mode(model, caps)
    if model.is_causal and caps.cache_arg is not None:
        caps.cached_decoding = _check(caps, "cached_decoding", name, lambda: _decoding_ok(model, ids),
                                      "cached decoding does not equal a full recompute")
        caps.prefix_reuse = caps.cached_decoding and _check(
            caps, "prefix_reuse", name, lambda: _prefix_ok(model, ids, plain),
            "a kept cache cannot be cut back to a prefix and reused (a state-space or recurrent cache)")  # fmt: skip
    elif model.is_causal:
        caps.problems["cached_decoding"] = f"{name} returns no cache: every step is recomputed"
    if model.is_causal and not caps.cached_decoding:
        caps.problems["prefix_reuse"] = f"{name} has no usable cache, so no prefix of one can be reused"
    if not caps.start_layer:
        caps.problems["staggered"] = f"{name} cannot start runs above block 0, so rows cannot start at several"
    for check in ("start_layer", "staggered", "cached_decoding", "prefix_reuse"):
        if getattr(caps, check):
            caps.problems.pop(check, None)
    return caps


def _probe_structure(model, caps: Capabilities, ids: torch.Tensor) -> None:
    """One plain forward: what the blocks take and return (c), and the head that follows them (a)."""
    from layerscope.engine.forward import call_model
    from layerscope.models.head import fit_head, trace_head

    seen: dict = {}
    first = model.adapter.blocks[0]

    def pre(module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states")
        seen["input"] = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else type(hidden).__name__

    def post(module, args, output):
        kind = "tuple" if isinstance(output, tuple) else "list" if isinstance(output, list) else "tensor"
        seen["output"] = (kind, len(output) if kind != "tensor" else 1)

    handles = [first.register_forward_pre_hook(pre, with_kwargs=True), first.register_forward_hook(post)]
    try:
        names, last_out, logits = trace_head(
            model.hf, model.adapter.blocks[-1], lambda: call_model(model, {"input_ids": ids}).logits
        )
    finally:
        for handle in handles:
            handle.remove()
    name = type(model.hf).__name__
    shape = seen.get("input")
    if not (isinstance(shape, tuple) and len(shape) == 3 and shape[-1] == model.d_model):
        raise AdapterError(
            f"the blocks of {name} pass {shape} between them, not one [B, T, {model.d_model}] residual stream "
            "(e.g. Gemma 3n's stacked AltUp states): layerscope cannot place sites on it, so it refuses this model"
        )
    caps.block_output = seen["output"]
    if model.is_causal:
        try:
            head = fit_head(model.hf, names, last_out, logits)
            caps.head = {"names": head.names, "scale": head.scale, "softcap": head.softcap}
        except AdapterError as err:
            caps.problems["head"] = f"check 'head' failed on {name}: {err}"
    elif names and _is_norm(model.hf.get_submodule(names[0])):
        caps.head = {"names": names[:1], "scale": 1.0, "softcap": None}  # an encoder's final norm


def apply(model, caps: Capabilities) -> None:
    """Hand what the checks learned to the adapter: block structure, head, final norm."""
    from layerscope.models.head import Head

    adapter = model.adapter
    adapter.block_output = tuple(caps.block_output)
    spec = caps.head
    modules = [model.hf.get_submodule(n) for n in spec["names"]] if spec else []
    adapter.final_norm = modules[0] if modules and _is_norm(modules[0]) else None
    if model.is_causal:
        adapter.head = Head(modules, spec["names"], spec["scale"], spec["softcap"]) if spec else None
        adapter.head_problem = None if spec else caps.problems.get("head")


def _check(caps: Capabilities, check: str, name: str, fn, what: str) -> bool:
    detail = ""
    try:
        ok = bool(fn())
    except Exception as err:  # a shortcut that crashes is a shortcut the model does not support
        ok, detail = False, f" ({type(err).__name__}: {str(err)[:160]})"
    if not ok:
        caps.problems[check] = f"check '{check}' failed on {name}: {what}{detail}"
    return ok


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to rounding: 1e-4 of the largest value in fp32, 3e-2 in 16-bit types (a broken
    assumption gives differences of the order of the values themselves)."""
    if a.shape != b.shape:
        return False
    relative = 1e-4 if b.dtype == torch.float32 or b.dtype == torch.float64 else 3e-2
    tol = relative * max(1.0, float(b.abs().max()))
    return bool((a.float() - b.float()).abs().max() <= tol)


def _plain_output(model, ids: torch.Tensor) -> torch.Tensor:
    """The reference: logits (decoders) or the last block's output (encoders) of an engine run."""
    out = model.run(_batch(model, ids), capture=("resid_post", -1))
    return out.logits if model.is_causal else out.get("resid_post", model.n_layers - 1)


def _output(model, result) -> torch.Tensor:
    return result.logits if model.is_causal else result.get("resid_post", model.n_layers - 1)


def _batch(model, ids: torch.Tensor):
    rows = ids.tolist()
    return from_ids(model.tokenizer, rows, ["probe"] * len(rows), [None] * len(rows), model.device)


def _start_layer_ok(model, ids, plain) -> bool:
    k = max(1, model.n_layers // 2)
    batch = _batch(model, ids)
    clean = model.run(batch, capture="resid_pre")
    out = model.run(batch, start_layer=k, start_states=clean.get("resid_pre", k), capture=("resid_post", -1))
    return _close(_output(model, out), plain)


def _staggered_ok(model, ids, plain) -> bool:
    k = max(1, model.n_layers // 2)
    batch = _batch(model, ids)
    clean = model.run(batch, capture="resid_pre")
    out = model.run(
        batch, variants=[[], []], start_layer=[0, k], start_states={k: clean.get("resid_pre", k)},
        capture=("resid_post", -1), _fallback=False,
    )  # fmt: skip
    return _close(_output(model, out), plain.expand(2, *plain.shape[1:]))


def _padding_mode(model, caps: Capabilities) -> str:
    short, long = probe_ids(model, 3, offset=7), probe_ids(model, 6)
    alone = _plain_output(model, short)[:, -1]
    for mode in ("position_ids", "model"):
        caps.padding = mode
        try:
            batch = from_ids(model.tokenizer, [long[0].tolist(), short[0].tolist()], ["a", "b"], [None, None],
                             model.device)  # fmt: skip
            out = model.run(batch, capture=("resid_post", -1), _fallback=False)
            if _close(_output(model, out)[1:, -1], alone):
                return mode
        except Exception:  # noqa: S112 - a mode the model cannot take is simply not its mode
            continue
    caps.problems["padding"] = (
        f"a left-padded row differs from the same prompt alone on {type(model.hf).__name__} "
        "(no attention mask, or positions counted otherwise): prompts of different lengths run in groups of "
        "equal length"
    )
    return "groups"


def _decoding_ok(model, ids) -> bool:
    """Two cached steps equal the full recompute: with the full attention mask on each step, or
    else (Mamba applies a step's mask to its one new token) without it, for unpadded rows only."""
    from layerscope.engine.forward import call_model

    full = call_model(model, {"input_ids": ids}).logits[:, -2:]
    prompt = ids[:, :-2]
    for with_mask in (True, False):
        out = call_model(model, {"input_ids": prompt}, keep_cache=True)
        if out.cache is None:
            raise AdapterError("the forward returned no cache")
        cache, steps = out.cache, []
        for i in range(2):
            pos = prompt.shape[1] + i
            step_inputs = {"input_ids": ids[:, pos : pos + 1], "position_ids": torch.tensor([[pos]], device=ids.device)}
            if with_mask:
                step_inputs["attention_mask"] = torch.ones(1, pos + 1, dtype=torch.long, device=ids.device)
            out = call_model(model, step_inputs, cache=cache, keep_cache=True)
            cache = out.cache
            steps.append(out.logits[:, -1])
        if cache is not None and _close(torch.stack(steps, 1), full):
            model.caps.decode_mask = with_mask
            return True
    return False


def _prefix_ok(model, ids, plain) -> bool:
    # three tokens: shorter than any sliding window, whose cache legitimately cannot be cut back
    # once a prompt outgrows it (the engine says so at run time)
    ids = ids[:, :3]
    plain = _plain_output(model, ids)
    batch = _batch(model, ids)
    kept = model.run(batch, keep_cache=True)
    reused = model.run(batch, variants=[[], []], prefix=kept, prefix_length=2, _fallback=False)
    if not _close(reused.logits[:1, -1], plain[:, -1]):
        return False
    if model.caps.staggered:  # the staggered path widens the prefix cache block by block
        k = max(1, model.n_layers // 2)
        clean = model.run(batch, capture="resid_pre")
        out = model.run(
            batch, variants=[[], []], start_layer=[0, k], prefix=kept, prefix_length=2,
            start_states={k: clean.get("resid_pre", k)[:, 2:]}, _fallback=False,
        )  # fmt: skip
        return _close(out.logits[:, -1], plain[:, -1].expand(2, -1))
    return True
