"""Patchscope layer sweep: token identity at every layer, 20 generated tokens, vs 30 separate generations.

Source: "The Eiffel Tower is located in the city of", last position, ``resid_post[l]`` for every layer l.
Target: the token-identity prompt (``layerscope.methods.patchscopes.IDENTITY_PROMPT``), i* = its last token, l* = l.

- layerscope: ``layerscope.methods.patchscopes.token_identity`` (one source run; every layer's variant in one
  batched, KV-cached greedy generation, the patch on the prompt pass only). When that module is not
  installed, the engine call it is built on: ``model.generate(target, variants=[[patch(...)] ...],
  mode="prompt")``.
- baseline: the straightforward loop, one Hugging Face ``generate`` per layer (greedy, KV cache) with a
  raw forward hook on block l that writes the source state at the last position on the prompt pass.

Both include the source run. Rounds are interleaved; the ratio is of medians. The generated texts are
compared layer by layer (greedy decoding of a batch vs one row can differ where two logits tie within
float rounding; the number of identical continuations is reported).
"""

from __future__ import annotations

import statistics
import time

import torch

import layerscope as ls

SOURCE = "The Eiffel Tower is located in the city of"


def _layerscope(model: ls.Model, max_new_tokens: int) -> list[str]:
    try:
        from layerscope.methods.patchscopes import token_identity
    except ImportError:
        token_identity = None
    if token_identity is not None:
        table = token_identity(model, SOURCE, "last", "all", max_new_tokens=max_new_tokens, batch_budget=None)
        return table.sort_values("source_layer")["text"].tolist()
    from layerscope.methods.patchscopes.presets import IDENTITY_PROMPT  # pragma: no cover - fallback path

    src = model.run(SOURCE, capture="resid_post", logits=None)
    variants = [[ls.patch("resid_post", l, "last", src.state("resid_post", l, -1))] for l in range(model.n_layers)]
    return model.generate(IDENTITY_PROMPT, variants=variants, max_new_tokens=max_new_tokens, mode="prompt").texts


def _separate(model: ls.Model, max_new_tokens: int) -> list[str]:
    from layerscope.methods.patchscopes.presets import IDENTITY_PROMPT

    tok = model.tokenizer
    blocks = model.adapter.blocks
    states: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_hook(
            lambda m, a, o, l=l: states.__setitem__(l, (o[0] if isinstance(o, tuple) else o)[0, -1])
        )
        for l, b in enumerate(blocks)
    ]
    try:
        with torch.no_grad():
            model.hf(**tok(SOURCE, return_tensors="pt").to(model.device))
    finally:
        for h in handles:
            h.remove()
    target = tok(IDENTITY_PROMPT, return_tensors="pt").to(model.device)
    n = target["input_ids"].shape[1]
    texts = []
    for l in range(model.n_layers):

        def hook(module, args, output, l=l):
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.shape[1] != n:  # generation steps: leave them alone
                return None
            hidden = hidden.clone()
            hidden[:, -1] = states[l]
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handle = blocks[l].register_forward_hook(hook)
        try:
            with torch.no_grad():
                out = model.hf.generate(
                    **target, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
                )
        finally:
            handle.remove()
        ids = out[0, n:].tolist()
        if tok.eos_token_id in ids:
            ids = ids[: ids.index(tok.eos_token_id)]
        texts.append(tok.decode(ids))
    return texts


def bench_patchscope(model: ls.Model, max_new_tokens: int = 20, rounds: int = 3, log=print) -> dict:
    ours_t, theirs_t = [], []
    ours = theirs = None
    for r in range(rounds):
        start = time.perf_counter()
        ours = _layerscope(model, max_new_tokens)
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = _separate(model, max_new_tokens)
        theirs_t.append(time.perf_counter() - start)
        log(f"  patchscope round {r + 1}/{rounds}: layerscope {ours_t[-1]:.2f}s, separate {theirs_t[-1]:.2f}s")
    same = sum(a.strip() == b.strip() for a, b in zip(ours, theirs, strict=True))
    return {
        "benchmark": f"patchscope token identity, {model.n_layers} layers x {max_new_tokens} tokens",
        "baseline": f"{model.n_layers} separate HF generate calls + hook",
        "layerscope_s": statistics.median(ours_t),
        "baseline_s": statistics.median(theirs_t),
        "speedup": statistics.median(theirs_t) / statistics.median(ours_t),
        "same_text": f"{same}/{len(ours)}",
        "target": ">= 5x",
    }
