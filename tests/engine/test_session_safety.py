"""Hooks never leak: an interrupt at any line of install or removal, threads, nested runs."""

from __future__ import annotations

import signal
import sys
import threading

import pytest
import torch

import layerscope as ls
from layerscope.engine import session as session_module
from layerscope.errors import InterventionError
from layerscope.testing import tiny_model
from tests.helpers import assert_clean

PROMPT = "the capital of france is paris"
CHANGING = ("__enter__", "__exit__", "_install", "_remove", "_wrap_block", "restore", "_unwrap", "remove_stale")


def interventions(model):
    return [ls.add("resid_post", 1, "all", torch.ones(model.d_model)), ls.zero("mlp_out", 2, -1)]


def _lines_while_changing(model, fail_at: int | None) -> int:
    """Run once, counting the lines of the session's install/removal code; raise KeyboardInterrupt at
    line ``fail_at`` (an interrupt no handler can defer: it comes from the tracer itself)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if frame.f_code.co_filename != session_module.__file__ or frame.f_code.co_name not in CHANGING:
            return None

        def local(frame, event, arg):
            nonlocal count
            if event == "line":
                count += 1
                if count == fail_at:
                    raise KeyboardInterrupt
            return local

        return local

    sys.settrace(tracer)
    try:
        model.run(PROMPT, interventions=interventions(model), capture="attn_out")
    finally:
        sys.settrace(None)
    return count


def test_an_interrupt_at_any_line_leaves_no_hook_after_the_next_run():
    model = tiny_model("llama")
    reference = model.run(PROMPT).logits
    steered = model.run(PROMPT, interventions=interventions(model)).logits
    total = _lines_while_changing(model, None)
    assert total > 20
    interrupted = 0
    for line in range(1, total + 1):
        try:
            _lines_while_changing(model, line)
        except KeyboardInterrupt:
            interrupted += 1
        # the next run starts by undoing whatever the interrupted one left, and is exact
        assert torch.equal(model.run(PROMPT, interventions=interventions(model)).logits, steered), line
        assert torch.equal(model.run(PROMPT).logits, reference), line
        assert_clean(model)
    assert interrupted == total


def test_ctrl_c_during_install_is_raised_after_and_leaves_the_model_clean(monkeypatch):
    model = tiny_model("llama")
    reference = model.run(PROMPT).logits
    original = session_module.HookSession._wrap_block

    def wrap_and_interrupt(self, layer):
        original(self, layer)
        if layer == 1:
            signal.raise_signal(signal.SIGINT)  # arrives while the wrappers go in: held, then raised

    monkeypatch.setattr(session_module.HookSession, "_wrap_block", wrap_and_interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.run(PROMPT, interventions=interventions(model))
    monkeypatch.undo()
    assert_clean(model)
    assert torch.equal(model.run(PROMPT).logits, reference)


def test_a_run_inside_a_run_is_refused():
    model = tiny_model("llama")

    def nested(states, context):
        model.run(PROMPT)
        return states

    with pytest.raises(InterventionError, match="inside another run"):
        model.run(PROMPT, interventions=[ls.apply("resid_post", 1, "all", nested)])
    assert_clean(model)
    model.run(PROMPT)  # the model is usable again


def test_runs_from_two_threads_take_turns_and_match_serial_runs():
    model = tiny_model("llama")
    vectors = [torch.randn(model.d_model, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    serial = [model.run(PROMPT, interventions=[ls.add("resid_post", 2, "all", v)]).logits for v in vectors]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def work(indices):
        try:
            for i in indices:
                results[i] = model.run(PROMPT, interventions=[ls.add("resid_post", 2, "all", vectors[i])]).logits
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(range(k, 8, 2),)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, expected in enumerate(serial):
        assert torch.equal(results[i], expected)
    assert_clean(model)


def test_a_prompt_longer_than_learned_positions_is_refused_with_a_message():
    model = tiny_model("gpt2")  # n_positions = 256, learned
    long = " ".join(["the"] * 300)
    with pytest.raises(InterventionError, match="needs 300 positions but .* reads at most 256"):
        model.run(long)
    with pytest.raises(InterventionError, match="max_new_tokens=60"):
        model.generate(" ".join(["the"] * 200), max_new_tokens=60)
    assert tiny_model("llama").max_positions is None  # rotary: no learned table
    assert_clean(model)


def test_interventions_below_the_start_layer_and_bad_prompts_are_refused():
    model = tiny_model("llama")
    clean = model.run(PROMPT, capture="resid_pre")
    with pytest.raises(InterventionError, match=r"layer\(s\) \[1\] lie below start_layer=2"):
        model.run(PROMPT, start_layer=2, start_states=clean.get("resid_pre", 2),
                  interventions=[ls.zero("resid_post", 1, -1)])  # fmt: skip
    with pytest.raises(ls.LayerscopeError, match="prompts must be a string or a list of strings, got int"):
        model.run(123)
    assert_clean(model)


def test_a_device_the_machine_lacks_is_one_line():
    from layerscope.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU: use --device cpu"):
        ls.load("tiny-does-not-matter", device="cuda")
