"""The :class:`Model`: a Hugging Face model, its tokenizer and the parts the engine needs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from layerscope.engine.batch import Batch, tokenize
from layerscope.engine.generate import generate as _engine_generate
from layerscope.engine.run import run as _engine_run
from layerscope.errors import ConfigError, InterventionError
from layerscope.models.adapter import Adapter, _text_config
from layerscope.models.checks import apply as apply_capabilities
from layerscope.models.checks import capabilities
from layerscope.models.loading import load_hf, parse_dtype, resolve


@dataclass
class ModelInfo:
    name: str
    source: str
    n_layers: int
    d_model: int
    vocab_size: int
    architecture: str


class Model:
    """A loaded model: ``hf`` (the transformers module), ``tokenizer`` and ``adapter``.

    All experiments go through :meth:`run` and :meth:`generate`; nothing else hooks the model.
    """

    def __init__(
        self,
        hf,
        tokenizer,
        *,
        name: str = "model",
        source: str = "in memory",
        kind: str | None = None,
        head: Callable[[torch.Tensor], torch.Tensor] | None = None,
        parts: dict[str, str] | None = None,
        check_cache: bool = True,
    ):
        """Wrap ``hf`` and run the self-check (:mod:`layerscope.models.checks`).

        Args:
            head: your own ``[..., D] -> [..., vocab]`` head, for a model whose head the self-check
                cannot verify (it is then trusted as given).
            parts: dotted module names that override the inspection: ``{"blocks": "model.layers"}``.
            check_cache: reuse what an earlier load learned about this architecture and config.
        """
        self.hf = hf
        self.tokenizer = tokenizer
        self.name = name
        self.source = source
        self.adapter = Adapter.inspect(hf, parts)
        self.kind = kind or ("causal" if self.adapter.unembed is not None else "encoder")
        config = _text_config(hf.config)
        self.d_model = int(
            getattr(config, "hidden_size", None)
            or getattr(config, "n_embd", None)
            or self.adapter.embed.weight.shape[1]
        )
        self.vocab_size = int(getattr(config, "vocab_size", None) or self.adapter.embed.weight.shape[0])
        self.available_sites = {"resid_pre", "resid_post"}
        # post-LN encoders (BERT) fold the residual and a norm into their "attention" module, so
        # its output is not an attention contribution: only residual sites are offered there.
        if self.kind == "causal" and all(m is not None for m in self.adapter.attn):
            self.available_sites.add("attn_out")
        if self.kind == "causal" and all(m is not None for m in self.adapter.mlp):
            self.available_sites.add("mlp_out")
        self._lock = threading.Lock()
        self._owner: int | None = None
        #: how another process builds this model (``ls.load`` keywords, or a zero-argument callable):
        #: what Ray workers load their replicas from; None for a model wrapped in memory
        self.spec: dict | Callable[[], Model] | None = None
        self.caps = capabilities(self, use_cache=check_cache)
        apply_capabilities(self, self.caps)
        if head is not None:
            self.adapter.head, self.adapter.head_problem = head, None

    # ---- facts ---------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    @property
    def device(self) -> torch.device:
        """Where inputs go: the embedding's device, or, when accelerate offloaded it (its weight is
        then on ``meta``), the device its hook runs it on."""
        device = self.adapter.embed.weight.device
        if device.type != "meta":
            return device
        hook = getattr(self.adapter.embed, "_hf_hook", None)
        execution = getattr(hook, "execution_device", None)
        return torch.device("cpu" if execution is None else execution)

    @property
    def dtype(self) -> torch.dtype:
        return self.adapter.embed.weight.dtype

    @property
    def is_causal(self) -> bool:
        return self.kind == "causal"

    def info(self) -> ModelInfo:
        archs = getattr(self.hf.config, "architectures", None) or [type(self.hf).__name__]
        return ModelInfo(self.name, self.source, self.n_layers, self.d_model, self.vocab_size, archs[0])

    def __repr__(self) -> str:
        return f"Model({self.name!r}, layers={self.n_layers}, d_model={self.d_model}, {self.kind})"

    @contextmanager
    def exclusive(self):
        """Hold the model for one forward: runs from several threads take turns (the hooks of one
        must never meet another's), and a run started inside a run (from an ``ls.apply`` function)
        is refused, since it would see the outer run's hooks."""
        me = threading.get_ident()
        if self._owner == me:
            raise InterventionError(
                f"a run of {self.name!r} was started inside another run of it (e.g. from an ls.apply function): "
                "it would see the outer run's hooks; compute what you need before the outer run"
            )
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    @property
    def max_positions(self) -> int | None:
        """The most positions the model can read, where learned position embeddings fix it (GPT-2's
        ``wpe``, OPT's ``embed_positions``); None where positions are computed (rotary, ALiBi)."""
        config = _text_config(self.hf.config)
        limit = next(
            (getattr(config, k) for k in ("max_position_embeddings", "n_positions", "n_ctx")
             if isinstance(getattr(config, k, None), int)), None,
        )  # fmt: skip
        if limit is None:
            return None
        if getattr(self, "_learned_positions", None) is None:  # walking every module on each run costs
            tokens = self.adapter.embed
            self._learned_positions = any(  # a table of one row per position (OPT's has two extra rows)
                isinstance(m, torch.nn.Embedding) and m is not tokens and limit <= m.num_embeddings <= limit + 2
                for m in self.hf.modules()
            )
        return limit if self._learned_positions else None

    def can_reuse_prefix(self, seq_len: int) -> bool:
        """Whether a cache kept over ``seq_len`` tokens can be cut back to any prefix and reused: the
        self-check says whether the cache crops at all (state-space caches do not), and a
        sliding-window layer has already dropped the early positions of a prompt longer than its window."""
        if not self.caps.prefix_reuse:
            return False
        config = _text_config(self.hf.config)
        window = getattr(config, "sliding_window", None)
        kinds = getattr(config, "layer_types", None) or []
        uses_window = any("sliding" in str(kind) for kind in kinds) or (window is not None and not kinds)
        return not (uses_window and window is not None and seq_len > int(window))

    def check_length(self, n_tokens: int, what: str = "the prompt") -> None:
        """Refuse a sequence longer than the model can read, with a message that says so."""
        limit = self.max_positions
        if limit is not None and n_tokens > limit:
            raise InterventionError(
                f"{what} needs {n_tokens} positions but {self.name!r} reads at most {limit} (learned position "
                "embeddings): shorten it"
            )

    def check_report(self) -> dict[str, str]:
        """Each self-check and its outcome (``"ok"`` or the message a refused use raises)."""
        report = {}
        for check in ("head", "start_layer", "staggered", "padding", "cached_decoding", "prefix_reuse"):
            report[check] = self.caps.problems.get(check, "ok")
        return report

    # ---- the engine ------------------------------------------------------------------------
    def tokenize(self, prompts: str | Sequence[str]) -> Batch:
        """Left-padded batch of ``prompts`` on the model's device."""
        return tokenize(self.tokenizer, prompts, self.device)

    # The engine's own functions are the methods (one signature, one docstring: see
    # layerscope.engine.run.run and layerscope.engine.generate.generate).
    run = _engine_run
    generate = _engine_generate

def _check_device(device: str | None) -> None:
    """A device this machine does not have is one clear line, before anything loads."""
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but this machine has no CUDA GPU: use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} asked for, but MPS is not available here: use --device cpu")


def load(
    model: str | os.PathLike | None = None,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = "float32",
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    parts: dict[str, str] | None = None,
    max_memory: dict[int | str, str | int] | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> Model:
    """Load a model from disk (never from the network).

    Args:
        model: None for the default (SmolLM2-135M-Instruct), a built-in short name
            (``smollm2-135m``, ``gemma3-270m``, ``minilm-l6``), a ``.gguf`` path, a local Hugging Face
            folder, or a hub id already in the local hub cache.
        device: where to put the model (ignored when ``device_map`` is given).
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to shard over several GPUs).
        trust_remote_code: off unless you pass True.
        head, parts: overrides for a model the self-check refuses (see :class:`Model`).
        max_memory: a memory budget per device (accelerate's ``{"cpu": "2GB", 0: "20GB"}``): what does
            not fit is offloaded to disk (``offload_folder``, default a temporary folder) and loaded
            block by block as the forward needs it, so a model bigger than memory still runs, with
            the same numbers (implies ``device_map="auto"``).
    """
    _check_device(device if device_map is None else None)
    source = resolve(model)
    hf, tokenizer, kind, folder = load_hf(
        source,
        dtype=parse_dtype(dtype),
        device=device,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        progress=progress,
        max_memory=max_memory,
        offload_folder=offload_folder,
    )
    description = source.description if source.gguf is None else f"{source.description} -> {folder}"
    loaded = Model(hf, tokenizer, name=source.name, source=description, kind=kind, head=head, parts=parts)
    loaded.spec = {
        "model": None if model is None else str(model), "device": device, "dtype": dtype if isinstance(dtype, str)
        else str(dtype).removeprefix("torch."), "device_map": device_map, "trust_remote_code": trust_remote_code,
        "head": head, "parts": parts, "max_memory": max_memory,
        "offload_folder": None if offload_folder is None else str(offload_folder),
    }  # fmt: skip
    return loaded
