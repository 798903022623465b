"""attend.py: every past-token manipulation and the switch against hand-written hooks, the sweep against
the per-k loop of full runs, the teacher-forced exact match against real greedy generation, tasks, CLI."""

import json

import pandas as pd
import pytest
import torch

import layerscope.methods.attend as attend
import layerscope.methods.attend.sweep as attend_sweep
from layerscope.engine.interventions import resolve_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.attend.scoring import _continues_word as continues_word
from layerscope.results.io import Checkpoint
from tests.conftest import save_model_dir, tiny
from tests.helpers import assert_clean, freeze_hooks, hf_logits, random_like, run_cli, shuffled, site_hook, with_hooks

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "what is the capital of spain ? the capital of france is"  # 12 tokens
N_PREV = 11
ITEMS = [
    attend.Item("the capital of france is", (" paris", " rome")),
    attend.Item("what is the capital of spain ?", (" madrid",)),
    attend.Item("hello world", (" the cat",)),
    attend.Item("one two three one two", (" three", " four five")),
]


def _previous(fn):
    """``h [1, T, D] -> h`` with every position but the last replaced by ``fn(h[0, :-1])``."""

    def edit(h):
        h = h.clone()
        h[0, :-1] = fn(h[0, :-1])
        return h

    return edit


def _hand(model, prompt, hooks) -> torch.Tensor:
    return with_hooks(model, hooks, lambda: hf_logits(model, prompt))[0, -1]


def _engine(model, prompt, interventions) -> torch.Tensor:
    return model.run(prompt, interventions=interventions, logits="last").last_logits[0]


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---- each manipulation vs a hand-written hook -----------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("k", [0, 2])
def test_random_once_and_every_layer_equal_hand_hooks(arch, k):
    model = tiny(arch)
    once = _engine(model, PROMPT, attend.manipulation("random", k, seed=3))
    _close(once, _hand(model, PROMPT, [site_hook(model, "resid_pre", k, _previous(lambda s: random_like(s, 3)))]))
    every = _engine(model, PROMPT, attend.manipulation("random", k, seed=3, every_layer=True))
    hooks = [site_hook(model, "resid_pre", j, _previous(lambda s: random_like(s, 3))) for j in range(k, model.n_layers)]
    _close(every, _hand(model, PROMPT, hooks))
    clean = hf_logits(model, PROMPT)[0, -1]
    assert (once - clean).abs().max() > 1e-4 and (every - once).abs().max() > 1e-5
    assert_clean(model)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_shuffle_equals_hand_hook(arch):
    model = tiny(arch)
    k = 1
    out = _engine(model, PROMPT, attend.manipulation("shuffle", k, seed=5))
    _close(out, _hand(model, PROMPT, [site_hook(model, "resid_pre", k, _previous(lambda s: shuffled(s, 5)))]))
    every = _engine(model, PROMPT, attend.manipulation("shuffle", k, seed=5, every_layer=True))
    hooks = [site_hook(model, "resid_pre", j, _previous(lambda s: shuffled(s, 5))) for j in range(k, model.n_layers)]
    _close(every, _hand(model, PROMPT, hooks))
    assert (out - hf_logits(model, PROMPT)[0, -1]).abs().max() > 1e-4


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("k", [0, 2])
def test_freeze_equals_hand_record_and_replay(arch, k):
    model = tiny(arch)
    out = _engine(model, PROMPT, attend.manipulation("freeze", k))
    _close(out, _hand(model, PROMPT, freeze_hooks(model, k, list(range(N_PREV)))))
    assert (out - hf_logits(model, PROMPT)[0, -1]).abs().max() > 1e-4


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_skip_attention_zeroes_attention_of_previous_tokens_from_k_on(arch):
    model = tiny(arch)
    k = 1
    out = _engine(model, PROMPT, attend.manipulation("skip-attention", k))
    hooks = [site_hook(model, "attn_out", j, _previous(torch.zeros_like)) for j in range(k, model.n_layers)]
    _close(out, _hand(model, PROMPT, hooks))
    everywhere = _engine(model, PROMPT, attend.manipulation("skip_attention", k, positions="all"))
    hooks = [site_hook(model, "attn_out", j, torch.zeros_like) for j in range(k, model.n_layers)]
    _close(everywhere, _hand(model, PROMPT, hooks))
    assert (out - everywhere).abs().max() > 1e-5


def _source_states(model, source: str, position: int) -> list[torch.Tensor]:
    """``resid_pre[j]`` of the source's token at ``position``, grabbed by raw pre-hooks."""
    grabbed = {}

    def grab(j):
        def fn(h):
            grabbed[j] = h[0, position].clone()
            return h

        return fn

    _hand(model, source, [site_hook(model, "resid_pre", j, grab(j)) for j in range(model.n_layers)])
    return [grabbed[j] for j in range(model.n_layers)]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_switch_equals_hand_patched_runs_at_every_k(arch):
    model = tiny(arch)
    prompt, source = "what is the capital of france ?", "the country italy"
    target_pos, source_pos = 5, 2
    states = _source_states(model, source, source_pos)
    table = attend.switch(model, prompt, "france", source, "italy", [" paris", " rome"])
    once = attend.switch(model, prompt, "france", source, "italy", [" paris"], layers="1,3", every_layer=False)
    ids = model.tokenizer.convert_tokens_to_ids(["paris", "rome"])

    def put(value):
        def fn(h):
            h = h.clone()
            h[0, target_pos] = value
            return h

        return fn

    for k in range(model.n_layers):
        hooks = [site_hook(model, "resid_pre", j, put(states[j])) for j in range(k, model.n_layers)]
        probs = _hand(model, prompt, hooks).softmax(-1)
        row = table[table["layer"] == k].iloc[0]
        assert row["p_paris"] == pytest.approx(float(probs[ids[0]]), abs=1e-5)
        assert row["p_rome"] == pytest.approx(float(probs[ids[1]]), abs=1e-5)
        assert row["top_token"] == model.tokenizer.decode([int(probs.argmax())])
    clean_top = int(hf_logits(model, prompt)[0, -1].argmax())
    assert table["ignored"].tolist() == [t == model.tokenizer.decode([clean_top]) for t in table["top_token"]]
    for k in (1, 3):
        probs = _hand(model, prompt, [site_hook(model, "resid_pre", k, put(states[k]))]).softmax(-1)
        assert once.loc[once["layer"] == k, "p_paris"].item() == pytest.approx(float(probs[ids[0]]), abs=1e-5)
    assert_clean(model)


# ---- the sweep equals the per-k loop; the exact match equals greedy generation ----------------------


def _grid(model, names=attend.MANIPULATIONS, layers=None):
    layers = range(model.n_layers) if layers is None else layers
    return {k: [attend.manipulation(n, k, seed=1) for n in names] for k in layers}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_sweep_equals_per_k_loop_of_full_runs(arch):
    model = tiny(arch)
    grid = _grid(model)
    clean, swept = attend.evaluate(model, ITEMS, grid, batch_budget=40_000)  # several chunks per layer
    clean_loop, looped = attend.evaluate(model, ITEMS, grid, reuse=False)
    assert torch.equal(clean.correct, clean_loop.correct)
    assert set(swept) == {(k, v) for k in range(model.n_layers) for v in range(4)}
    for key in swept:
        assert torch.equal(swept[key].correct, looped[key].correct), key
        _close(swept[key].answer_prob, looped[key].answer_prob)
    # and both equal plain single-prompt runs: the answer probability of item i under variant (k, v)
    for i, item in enumerate(ITEMS):
        first = model.tokenizer(item.prompt + item.answers[0])["input_ids"][len(model.tokenizer(item.prompt).input_ids)]
        for (k, v), scores in swept.items():
            probs = _engine(model, item.prompt, grid[k][v]).softmax(-1)
            assert float(scores.answer_prob[i]) == pytest.approx(float(probs[first]), abs=1e-5)


def _greedy_items(model, prompts, n_tokens=2):
    """Items whose answer is the clean greedy continuation (so the clean run gets them all right);
    prompts whose continuation does not survive decoding and re-tokenising are left out."""
    tok = model.tokenizer
    items = []
    for prompt in prompts:
        ids = model.generate(prompt, max_new_tokens=n_tokens, stop_at_eos=False).tokens[0].tolist()
        answer = " " + tok.decode(ids)
        if tok(prompt + answer)["input_ids"] == tok(prompt)["input_ids"] + ids:
            items.append(attend.Item(prompt, (answer,)))
    assert len(items) >= 3
    return items


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_exact_match_equals_greedy_generation_with_every_step_manipulation(arch):
    model = tiny(arch)
    prompts = [item.prompt for item in ITEMS] + [PROMPT, "the cat and the dog"]
    items = _greedy_items(model, prompts)
    grid = _grid(model)
    clean, scored = attend.evaluate(model, items, grid)
    assert bool(clean.correct.all())
    outcomes = set()
    for (k, v), scores in scored.items():
        for i, item in enumerate(items):
            answer = model.tokenizer(item.prompt + item.answers[0])["input_ids"][
                len(model.tokenizer(item.prompt).input_ids) :
            ]
            gen = model.generate(item.prompt, interventions=grid[k][v], mode="every_step", max_new_tokens=len(answer))
            assert not gen.used_cache
            expected = gen.tokens[0].tolist() == answer  # word-level tokens: every token ends a word
            assert bool(scores.correct[i]) == expected, (k, v, i)
            outcomes.add(expected)
    assert outcomes == {True, False}  # the comparison can fail both ways


def test_first_token_match_and_answer_prob():
    model = tiny("llama")
    items = _greedy_items(model, [item.prompt for item in ITEMS])
    wrong = [attend.Item(it.prompt, (" zero",)) for it in items]
    clean, _ = attend.evaluate(model, items + wrong, {}, match="first-token")
    assert clean.correct.tolist() == [True] * len(items) + [False] * len(items)
    zero = model.tokenizer.convert_tokens_to_ids("zero")
    for i, item in enumerate(wrong):
        probs = hf_logits(model, item.prompt)[0, -1].softmax(-1)
        assert float(clean.answer_prob[len(items) + i]) == pytest.approx(float(probs[zero]), abs=1e-5)


def test_word_boundary_check_on_a_subword_tokenizer():
    class Subword:  # decode() of a BPE-like vocabulary: " Par" "is" "ian" "\n"
        pieces = {0: " Par", 1: "is", 2: "ian", 3: "\n", 4: " is"}

        def decode(self, ids):
            return "".join(self.pieces[i] for i in ids)

    tok = Subword()
    assert continues_word(tok, (0, 1), 2)  # " Paris" + "ian"
    assert not continues_word(tok, (0, 1), 3)
    assert not continues_word(tok, (0, 1), 4)


# ---- sweep_task, groups, resume, summaries -----------------------------------------------------


def test_sweep_task_groups_and_resume_equal_one_group(tmp_path, monkeypatch):
    model = tiny("llama")
    items = attend.task_items("copy", limit=12)
    whole = attend.sweep_task(model, items, ["random", "freeze"], "0,2", progress=False, task="copy")
    assert set(whole.columns) >= {"layer", "manipulation", "accuracy", "answer_prob", "n", "clean_accuracy"}
    assert len(whole) == 4 and (whole["n"] == 12).all()
    ckpt = tmp_path / "run.jsonl"
    kwargs = dict(progress=False, task="copy", max_group_rows=5)
    parts = attend.sweep_task(model, items, ["random", "freeze"], "0,2", checkpoint=Checkpoint(ckpt, {}), **kwargs)
    pd.testing.assert_frame_equal(parts, whole, atol=1e-6, rtol=1e-5)
    n_groups = len(Checkpoint(ckpt, {}))
    assert n_groups >= 5

    def fail(*args, **kwargs):
        raise AssertionError("a finished group ran again")

    monkeypatch.setattr(attend_sweep, "evaluate", fail)
    again = attend.sweep_task(model, items, ["random", "freeze"], "0,2", checkpoint=Checkpoint(ckpt, {}), **kwargs)
    pd.testing.assert_frame_equal(again, whole, atol=1e-6, rtol=1e-5)


def test_stable_from_and_ignored_from():
    table = pd.DataFrame(
        {
            "layer": [0, 3, 6, 9] * 2,
            "manipulation": ["random"] * 4 + ["freeze"] * 4,
            "accuracy": [0.1, 0.95, 0.5, 0.9, 0.1, 0.2, 0.3, 0.5],
            "clean_accuracy": [1.0] * 8,
        }
    )
    assert attend.stable_from(table) == {"random": 9, "freeze": None}
    assert attend.stable_from(table, tolerance=0.6) == {"random": 3, "freeze": 9}
    switch = pd.DataFrame({"layer": [0, 1, 2, 3, 4], "ignored": [False, True, False, True, True]})
    assert attend.ignored_from(switch) == 3
    assert attend.ignored_from(switch.assign(ignored=False)) is None


def test_tasks_have_100_items_with_well_formed_answers():
    sizes = {name: len(attend.task_items(name)) for name in attend.TASKS}
    assert all(n >= 100 for n in sizes.values()), sizes
    capitals = attend.task_items("capitals")
    assert not any(it.prompt[-len("capital of Spain?\nA:") :] == "capital of Spain?\nA:" for it in capitals)
    assert all(it.prompt.count("Q:") == 2 and it.answers[0].startswith(" ") for it in capitals)
    for it in attend.task_items("arithmetic"):
        a, b = it.prompt.split("\n")[-1].rstrip("=").split("+")
        assert it.answers == (str(int(a) + int(b)),)
    for it in attend.task_items("copy"):
        first, again = it.prompt.split("\n")
        words = first.split()
        assert it.answers[0] == " " + words[len(again.split())]
    assert all(it.prompt.startswith("Q: Who wrote") for it in attend.task_items("facts", limit=5))
    assert len(attend.task_items("facts", limit=7)) == 7


def test_bad_input_names_the_problem():
    model = tiny("llama")
    with pytest.raises(LayerscopeError, match="unknown manipulation 'blur'.*random, freeze"):
        attend.manipulation("blur", 1)
    with pytest.raises(LayerscopeError, match="unknown task 'poems'"):
        attend.task_items("poems")
    with pytest.raises(LayerscopeError, match="layer 9 does not exist"):
        attend.sweep_task(model, ITEMS, ["random"], "9", progress=False)
    with pytest.raises(LayerscopeError, match="listed twice"):
        attend.sweep_task(model, ITEMS, ["random", "random"], progress=False)
    with pytest.raises(LayerscopeError, match="repeat once stripped"):
        attend.switch(model, "the capital of france is", "france", "italy", "italy", [" paris", "paris "])
    with pytest.raises(LayerscopeError, match="'germany' is not in the prompt"):
        attend.switch(model, "the capital of france is", "germany", "italy", "italy")
    with pytest.raises(LayerscopeError, match="beyond the model"):
        resolve_layers("5:2:1", model.n_layers)  # 5 is no layer of 4: an error, as `5` alone is
    with pytest.raises(LayerscopeError, match="select no layer"):
        resolve_layers("3:2:1", model.n_layers)
    assert resolve_layers("0:4:2", model.n_layers, sorted_unique=True) == [0, 2]
    assert_clean(model)


# ---- CLI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir("llama", tmp_path_factory.mktemp("tiny-llama"))


def test_cli_sweep_json_rows_equal_the_api(capsys, model_dir, tmp_path):
    png = tmp_path / "curves.png"
    code, out, err = run_cli(
        capsys,
        "attend",
        "sweep",
        "--model",
        model_dir,
        "--task",
        "copy",
        "--limit",
        "6",
        "--manipulation",
        "random,skip-attention",
        "--layers",
        "0:4:2",
        "--out",
        str(png),
        "--json",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert {"layer", "manipulation", "accuracy", "answer_prob", "n"} <= set(rows[0])
    assert [(r["manipulation"], r["layer"]) for r in rows] == [
        ("random", 0),
        ("random", 2),
        ("skip-attention", 0),
        ("skip-attention", 2),
    ]
    assert png.read_bytes()[:4] == b"\x89PNG" and "clean accuracy" in err and "within 10%" in err
    api = attend.sweep_task(
        tiny("llama"), attend.task_items("copy", limit=6), ["random", "skip-attention"], [0, 2], progress=False
    )
    for row, (_, ref) in zip(rows, api.iterrows(), strict=True):
        assert row["accuracy"] == pytest.approx(ref["accuracy"]) and row["n"] == 6
        assert row["answer_prob"] == pytest.approx(ref["answer_prob"], abs=1e-6)


def test_cli_switch_json_keys_and_errors(capsys, model_dir):
    args = ["attend", "switch", "--model", model_dir, "--prompt", "the capital of france is", "--position", "france"]
    args += ["--source", "the country italy", "--source-position", "italy", "--answers", " paris, rome", "--json"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 4 and {"layer", "top_token", "p_paris", "p_rome"} <= set(rows[0])
    assert "ignored from layer" in err or "not ignored" in err
    code, out, err = run_cli(capsys, *args[:-3], "--source-position", "germany")
    assert code == 2 and out == "" and "'germany' is not in the prompt" in err
    code, _, err = run_cli(capsys, "attend", "sweep", "--model", model_dir, "--task", "copy", "--manipulation", "blur")
    assert code == 2 and "unknown manipulation 'blur'" in err


# ---- the default model -------------------------------------------------------------------------


@pytest.mark.integration
def test_spain_france_italy_switch_on_the_default_model(default_model):
    example = attend.SWITCH_EXAMPLE
    table = attend.switch(
        default_model,
        example["prompt"],
        example["position"],
        example["source"],
        example["source_position"],
        example["answers"],
        layers="0,29",
    )
    early, late = table.iloc[0], table.iloc[1]
    assert early["top_token"] == " Rome" and early["p_Rome"] > 0.5  # followed at k = 0
    assert late["top_token"] == " Paris" and late["ignored"]  # ignored at the last layer
    assert set(table["clean_top_token"]) == {" Paris"}


def test_demo_section_runs_and_reports(tmp_path):
    from layerscope.methods.attend.report import DEMO_SECTIONS
    from layerscope.results.report import Report

    (name, section), *_ = DEMO_SECTIONS
    report = Report("demo")
    rows = section(tiny("llama"), report, tmp_path)
    assert [r["section"] for r in rows] == ["attend_switch", "attend_random"]
    assert {"p_Paris", "p_Rome"} <= set(rows[0])
    assert (tmp_path / "attend_switch.png").exists() and (tmp_path / "attend_random.png").exists()
    assert "Spain" in "".join(report.parts)
