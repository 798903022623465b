"""The views of ``layerscope explore``: each checks its request, runs the method's own API, and says
which ``layerscope`` command line gives the same rows.

A view never reimplements a method: its rows are the API call's rows (the API tests compare them).
Every request field is checked here against a bound, so a page cannot make the server read a file,
load an arbitrary model, or run an unbounded computation.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from layerscope.errors import LayerscopeError

MAX_PROMPT_CHARS = 400
MAX_PROMPT_TOKENS = 64
MAX_NEW_TOKENS = 40
MAX_TEXTS = 200
MAX_TEXT_CHARS = 2000
MAX_MODELS = 3
#: patching runs in this many pieces of consecutive layers: progress and cancellation between pieces.
#: Few, because each piece is one staggered sweep: on the default model 3 pieces of 10 layers cost
#: what one 30-layer sweep does (13 s vs 15 s, 10-token prompts), while 10 pieces of 3 cost 5x more.
PATCH_PIECES = 3


class RequestError(LayerscopeError):
    """A request the server refuses (HTTP 400), with a message for the page."""


@dataclass(frozen=True)
class Planned:
    """A checked request: ``work(job)`` computes its rows, ``command`` is the equivalent CLI call."""

    params: dict
    work: Callable
    command: str


# ---- request fields -------------------------------------------------------------------------------


def text(params: dict, name: str, default: str | None = None, limit: int = MAX_PROMPT_CHARS, empty=False) -> str:
    value = params.get(name, default)
    if value is None:
        raise RequestError(f"{name} is required")
    if not isinstance(value, str):
        raise RequestError(f"{name} must be text")
    if len(value) > limit:
        raise RequestError(f"{name} is {len(value)} characters long; the limit is {limit}")
    if not empty and not value.strip():
        raise RequestError(f"{name} is empty")
    return value


def integer(params: dict, name: str, default: int | None, low: int, high: int) -> int:
    value = params.get(name, default)
    if value is None:
        raise RequestError(f"{name} is required")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, float | bool) or str(number) != str(value).strip():
        raise RequestError(f"{name} must be an integer, got {value!r}")
    if not low <= number <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {number}")
    return number


def choice(params: dict, name: str, default: str, options) -> str:
    value = params.get(name, default)
    if value not in options:
        raise RequestError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def n_tokens(model, prompt: str, name: str = "prompt") -> int:
    count = len(model.tokenizer(prompt)["input_ids"])
    if count > MAX_PROMPT_TOKENS:
        raise RequestError(f"{name} has {count} tokens; the limit is {MAX_PROMPT_TOKENS}")
    return count


def cli(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def model_args(model) -> list[str]:
    """``--model`` for the command line: a built-in name, else the folder or file it was loaded from."""
    from pathlib import Path

    from layerscope.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

    if model.name == DEFAULT_MODEL:
        return []
    source = str(getattr(model, "source", "") or "")
    if model.name not in BUILTIN_MODELS and source and Path(source).exists():
        return ["--model", source]
    return ["--model", model.name]


def single_call(function) -> Callable:
    """A computation in one piece: progress 0 of 1, then done."""

    def work(job):
        job.step(0, 1)
        rows = function()
        job.step(1, 1)
        return rows

    return work


# ---- the views ------------------------------------------------------------------------------------


def plan_lens(model, params: dict, lenses) -> Planned:
    """The logit (or tuned) lens grid of one prompt, with the top 5 tokens of every cell."""
    from layerscope.methods.lens import logit_lens

    prompt = text(params, "prompt")
    n_tokens(model, prompt)
    lens_name = choice(params, "lens", "logit", ("logit", "tuned"))
    checked = {"prompt": prompt, "lens": lens_name}

    def work(job):
        job.step(0, 2)
        lens = lenses.tuned(model) if lens_name == "tuned" else None  # fitted once per model, then cached
        job.step(1, 2)
        rows = logit_lens(model, prompt, top_k=5, lens=lens)
        job.step(2, 2)
        return rows

    lens_args = ["--lens", "tuned"] if lens_name == "tuned" else []
    command = cli("layerscope", "lens", prompt, "--top-k", "5", *lens_args, *model_args(model), "--json")
    return Planned(checked, work, command + "  # the same rows but the prompt index")


def plan_decode(model, params: dict) -> Planned:
    """Patchscopes on one cell: token identity and entity description of the state at (layer, position)."""
    from layerscope.methods.patchscopes import DESCRIBE_PROMPT, IDENTITY_PROMPT, patchscope

    prompt = text(params, "prompt")
    length = n_tokens(model, prompt)
    layer = integer(params, "layer", None, 0, model.n_layers - 1)
    position = integer(params, "position", None, 0, length - 1)
    identity = text(params, "identity_prompt", IDENTITY_PROMPT, limit=MAX_TEXT_CHARS)
    describe = text(params, "describe_prompt", DESCRIBE_PROMPT, limit=MAX_TEXT_CHARS)
    new = integer(params, "max_new_tokens", 20, 0, MAX_NEW_TOKENS)
    checked = {
        "prompt": prompt,
        "layer": layer,
        "position": position,
        "identity_prompt": identity,
        "describe_prompt": describe,
        "max_new_tokens": new,
    }
    inspections = (("token identity", identity), ("entity description", describe))

    def work(job):
        tables = []
        for i, (name, target) in enumerate(inspections):
            job.step(i, len(inspections))
            rows = patchscope(model, prompt, position, target, [layer], "same", max_new_tokens=new)
            tables.append(rows.assign(inspection=name, target=target))
        job.step(len(inspections), len(inspections))
        return pd.concat(tables, ignore_index=True)

    def line(target: str, preset: str) -> str:
        shown = preset if target == {"identity": IDENTITY_PROMPT, "describe": DESCRIBE_PROMPT}[preset] else target
        return cli(
            "layerscope", "patchscope", "--source", prompt, "--position", str(position), "--target", shown,
            "--source-layers", str(layer), "--max-new-tokens", str(new), *model_args(model), "--json",
        )  # fmt: skip

    return Planned(checked, work, line(identity, "identity") + "\n" + line(describe, "describe"))


def plan_patching(model, params: dict) -> Planned:
    """Activation patching over (layer, position), in a few pieces of consecutive layers."""
    from layerscope.methods.patching import PATCH_SITES, activation_patching

    clean, corrupt = text(params, "clean"), text(params, "corrupt")
    n_tokens(model, clean, "clean")
    n_tokens(model, corrupt, "corrupt")
    answer = text(params, "answer", limit=40)
    wrong = text(params, "wrong", limit=40)
    site = choice(params, "site", "resid_post", PATCH_SITES)
    checked = {"clean": clean, "corrupt": corrupt, "answer": answer, "wrong": wrong, "site": site}
    layers = list(range(model.n_layers))
    size = -(-len(layers) // PATCH_PIECES)
    pieces = [layers[i : i + size] for i in range(0, len(layers), size)]

    def work(job):
        tables = []
        for i, piece in enumerate(pieces):
            job.step(i, len(pieces))
            kwargs = {"site": site, "layers": piece, "progress": False}
            tables.append(activation_patching(model, clean, corrupt, answer, wrong, **kwargs))
        job.step(len(pieces), len(pieces))
        return pd.concat(tables, ignore_index=True).sort_values(["layer", "position"], ignore_index=True)

    command = cli(
        "layerscope", "sweep", "--clean", clean, "--corrupt", corrupt, "--answer", answer, "--wrong", wrong,
        "--site", site, *model_args(model), "--json",
    )  # fmt: skip
    return Planned(checked, work, command)


def plan_attend(model, params: dict) -> Planned:
    """The attend-first switch: p(answer) against k."""
    from layerscope.methods.attend import switch

    prompt = text(params, "prompt")
    n_tokens(model, prompt)
    position = text(params, "position", limit=80)
    source = text(params, "source")
    n_tokens(model, source, "source")
    source_position = text(params, "source_position", limit=80)
    answers_text = text(params, "answers", "", limit=200, empty=True)
    answers = [a for a in answers_text.split(",") if a.strip()][:4]
    for name, where, what in (("position", position, prompt), ("source_position", source_position, source)):
        if where not in what:
            raise RequestError(f"{name} {where!r} is not a substring of its prompt")
    checked = {
        "prompt": prompt,
        "position": position,
        "source": source,
        "source_position": source_position,
        "answers": answers_text,
    }
    work = single_call(lambda: switch(model, prompt, position, source, source_position, answers))
    command = cli(
        "layerscope", "attend", "switch", "--prompt", prompt, "--position", position, "--source", source,
        "--source-position", source_position, *(["--answers", ",".join(answers)] if answers else []),
        *model_args(model), "--json",
    )  # fmt: skip
    return Planned(checked, work, command)


def plan_metrics(model, params: dict, loaded: dict, listed) -> Planned:
    """Layer-by-Layer metrics of several models on one relative-depth axis."""
    from layerscope.datasets import load_corpus
    from layerscope.methods.layer_by_layer import canonical_metric, compare_models
    from layerscope.methods.layer_by_layer.representation import METRIC_NAMES

    source = choice(params, "texts", "corpus", ("corpus", "pasted"))
    limit = integer(params, "limit", 32, 2, MAX_TEXTS)
    if source == "corpus":
        texts = load_corpus()[:limit]
        lines = ""
    else:
        lines = text(params, "lines", limit=MAX_TEXTS * 200)
        texts = [t.strip() for t in lines.splitlines() if t.strip()][:limit]
        if len(texts) < 2:
            raise RequestError("paste at least 2 non-empty lines")
    names = text(params, "metrics", "prompt_entropy,dataset_entropy,curvature", limit=200)
    try:
        metrics = [canonical_metric(m.strip()) for m in names.split(",") if m.strip()]
    except LayerscopeError as error:
        raise RequestError(str(error)) from None
    if not metrics or len(metrics) > len(METRIC_NAMES):
        raise RequestError("pick at least one metric")
    wanted = text(params, "models", model.name, limit=200)
    models = [m.strip() for m in wanted.split(",") if m.strip()]
    if not models or len(models) > MAX_MODELS or len(set(models)) != len(models):
        raise RequestError(f"name 1 to {MAX_MODELS} different models")
    for name in models:
        if name not in loaded and name not in listed:
            raise RequestError(
                f"model {name!r} is neither loaded nor listed by `layerscope models`: use one of "
                f"{', '.join(sorted(set(loaded) | set(listed)))}"
            )
    checked = {"texts": source, "limit": limit, "lines": lines, "metrics": ",".join(metrics),
               "models": ",".join(models)}  # fmt: skip

    def work(job):
        tables = []
        for i, name in enumerate(models):
            job.step(i, len(models))
            entry = loaded.get(name, name)  # a model not loaded is loaded for this run, then released
            tables.append(compare_models([entry], texts, metrics, progress=False))
        job.step(len(models), len(models))
        return pd.concat(tables, ignore_index=True)

    words = ["layerscope", "metrics", "--metrics", ",".join(metrics), "--limit", str(len(texts))]
    words += ["--models", ",".join(models)] if len(models) > 1 else model_args(model)
    if source == "pasted":
        words += ["--texts", "texts.txt"]
    command = cli(*words, "--json") + ("  # texts.txt: the pasted lines" if source == "pasted" else "")
    return Planned(checked, work, command)


VIEWS = ("lens", "decode", "patching", "attend", "metrics")
