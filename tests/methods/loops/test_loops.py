"""Loops (Loop as a Bridge) against independent computations on tiny models.

References: plain Hugging Face forwards (``output_hidden_states``), a rebuilt looped block list
(``tests.helpers.looped_copy``) with raw hooks, direct scikit-learn fits and numpy means.
"""

import json

import numpy as np
import pytest
import torch

import layerscope as ls
import layerscope.methods.loops as L
from layerscope.errors import LayerscopeError
from tests.conftest import save_model_dir, tiny
from tests.helpers import assert_clean, hf_hidden_states, looped_copy, run_cli, with_hooks

PROMPTS = ["hello world", "the capital of france is paris", "what is the capital of spain ?"]  # by length
BLOCK = (1, 3)

pytestmark = pytest.mark.usefixtures("one_thread")


def looped_hidden(model, prompts, times, block=BLOCK, hooks=()):
    """Hidden states and logits of the rebuilt looped model on the engine's own (left-padded) batch."""
    hf, order = looped_copy(model, *block, times)
    inputs = model.tokenize(prompts).model_inputs()
    out = with_hooks(
        model, hooks(hf) if callable(hooks) else hooks, lambda: hf(**inputs, use_cache=False, output_hidden_states=True)
    )
    return out, order


# ---- specs ----------------------------------------------------------------------------------------


def test_parse_block_and_loops():
    assert L.parse_block("10:20", 30) == (10, 20)
    assert L.parse_block(None, 30) == (10, 20)
    assert L.parse_block("-10:", 30) == (20, 30)
    assert L.parse_block((0, 4), 4) == (0, 4)
    for bad in ("3:3", "5:2", "0:31", "x", "12"):
        with pytest.raises(LayerscopeError, match="block"):
            L.parse_block(bad, 30)
    assert L.parse_loops("1..4") == [1, 2, 3, 4]
    assert L.parse_loops("2-3") == [2, 3]
    assert L.parse_loops("4,1,1") == [1, 4]
    assert L.parse_loops(3) == [3]
    for bad in ("0..2", "a", "", [0]):
        with pytest.raises(LayerscopeError, match="loop counts"):
            L.parse_loops(bad)


def test_execution_order_matches_the_engine():
    model = tiny("llama")
    for times in (1, 2, 3):
        out = model.run(PROMPTS[0], loop=(*BLOCK, times), capture="resid_post")
        assert L.execution_order(model.n_layers, BLOCK, times) == out.iterations("resid_post")


def test_at_iteration():
    iv = L.at_iteration(ls.add("resid_post", 2, "all", torch.ones(32)), 1)
    assert iv.loop == 1 and iv.layers == 2
    assert L.at_iteration(iv, None).loop is None
    for bad in (-1, 1.5, True):
        with pytest.raises(LayerscopeError, match="iteration"):
            L.at_iteration(iv, bad)


# ---- looped states ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_one_loop_is_the_plain_forward_bit_for_bit(arch):
    model = tiny(arch)
    score = L.yes_no_scorer(model.tokenizer)
    got = L.loop_states(model, PROMPTS, BLOCK, [1], score=score, progress=False)[1]
    with torch.no_grad():
        ref = model.hf(**model.tokenize(PROMPTS).model_inputs(), output_hidden_states=True)
    assert got.order == [(layer, 0) for layer in range(model.n_layers)]
    for layer in range(model.n_layers - 1):  # HF's last hidden state is after the final norm
        assert torch.equal(got.states[(layer, 0)], ref.hidden_states[layer + 1][:, -1])
    # logits="last" unembeds one position only: the matmul shape differs, so ~1e-7 rounding
    assert torch.allclose(got.scores, score(ref.logits[:, -1]), rtol=1e-5, atol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_loops_equal_a_hand_written_repeated_block_list(arch):
    model = tiny(arch)
    got = L.loop_states(model, PROMPTS, BLOCK, [1, 2, 3], pooling="mean", progress=False)  # reuses layers < a
    mask = model.tokenize(PROMPTS).attention_mask.bool()
    for times in (2, 3):
        ref, order = looped_hidden(model, PROMPTS, times)
        executed = [(layer, order[:j].count(layer)) for j, layer in enumerate(order)]
        assert got[times].order == executed
        for j, key in enumerate(executed[:-1]):
            expected = ls.metrics.pool(ref.hidden_states[j + 1], mask, "mean").float()
            assert torch.allclose(got[times].states[key], expected, atol=1e-5), key
    assert_clean(model)


def test_chunking_and_start_reuse_do_not_change_states():
    model = tiny("llama")
    whole = L.loop_states(model, PROMPTS[::-1], BLOCK, [1, 3], progress=False)
    chunked = L.loop_states(model, PROMPTS[::-1], BLOCK, [1, 3], batch_budget=1, progress=False)  # one row a chunk
    alone = L.loop_states(model, PROMPTS[::-1], BLOCK, [3], progress=False)  # no reuse
    for key, value in whole[3].states.items():
        assert torch.allclose(value, chunked[3].states[key], atol=1e-5)
        assert torch.allclose(value, alone[3].states[key], atol=1e-5)
    # prompts come back in input order: the shortest prompt is last here
    single = L.loop_states(model, [PROMPTS[0]], BLOCK, [3], progress=False)[3]
    assert torch.allclose(whole[3].states[(2, 1)][-1], single.states[(2, 1)][0], atol=1e-5)


def test_loop_generate_equals_a_greedy_loop_over_the_looped_block_list():
    model = tiny("llama")
    texts = L.loop_generate(model, PROMPTS, BLOCK, 2, max_new_tokens=3, batch_budget=1, progress=False)
    hf, _ = looped_copy(model, *BLOCK, 2)
    for prompt, text in zip(PROMPTS, texts, strict=True):
        ids = model.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            for _ in range(3):
                ids = torch.cat([ids, hf(input_ids=ids, use_cache=False).logits[:, -1:].argmax(-1)], dim=1)
        assert text == model.tokenizer.decode(ids[0, -3:].tolist())


# ---- Yes/No, tasks, P_TP / P_SV / P_RR -----------------------------------------------------------------


def test_yes_no_probability_equals_a_plain_forward():
    model = tiny("llama")
    yes, no = L.yes_no_ids(model.tokenizer)
    vocab = model.tokenizer.get_vocab()
    assert yes == [vocab["yes"]] and no == [vocab["no"]]  # the tiny tokenizer lowercases every form
    prompt = "is the capital of france paris ?\nAnswer:"
    with torch.no_grad():
        probs = model.hf(**model.tokenizer(prompt, return_tensors="pt")).logits[0, -1].softmax(-1)
    scores = L.yes_no_scorer(model.tokenizer)(model.run(prompt, logits="last").last_logits)
    assert torch.allclose(scores[0], torch.stack([probs[yes].sum(), probs[no].sum()]), atol=1e-7)


def test_tasks_and_their_oracle():
    model = tiny("llama")
    task = L.arithmetic_task(model, 40, seed=3)
    assert task.labels.sum() == 20 and len(task.verify_prompts) == len(task.task_prompts) == 40
    for item, prompt in zip(task.items, task.verify_prompts, strict=True):
        assert item["correct"] == (int(item["answer"]) == item["a"] + item["b"])
        assert f"{item['a']}+{item['b']}={item['answer']}" in prompt and prompt.endswith("Answer:")
    item = task.items[0]
    assert task.check(item, f"{item['a'] + item['b']}\n1+") and not task.check(item, "x")
    harmful = L.harmful_task(model, seed=1)
    assert len(harmful.items) == 233 and abs(int(harmful.labels.sum()) - 116) <= 1
    for it in harmful.items:
        assert it["correct"] == (it["answer"] == it["label"])
    h = next(it for it in harmful.items if it["label"] == "harmful")
    assert harmful.check(h, "Yes, it is") and not harmful.check(h, "No.") and not harmful.check(h, "Maybe")
    with pytest.raises(LayerscopeError, match="unknown task"):
        L.load_oracle_task("chess", model)


def test_self_verification_against_direct_computations():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = tiny("llama")
    task = L.arithmetic_task(model, 30, seed=1)
    table = L.self_verification(model, task, BLOCK, [1, 2], folds=3, progress=False)
    value = {
        (r.loops, r.metric, r.layer, r.iteration): r.value
        for r in table.fillna({"layer": -1, "iteration": -1}).itertuples()
    }
    yes, no = L.yes_no_ids(model.tokenizer)
    labels = task.labels
    for times in (1, 2):
        hf, order = looped_copy(model, *BLOCK, times)
        feats, verdicts = {}, []
        for prompt in task.verify_prompts:  # one prompt at a time: no padding at all
            with torch.no_grad():
                out = hf(**model.tokenizer(prompt, return_tensors="pt"), use_cache=False, output_hidden_states=True)
            probs = out.logits[0, -1].softmax(-1)
            verdicts.append(bool(probs[yes].sum() > probs[no].sum()))
            for j, layer in enumerate(order[:-1]):
                feats.setdefault((layer, order[:j].count(layer)), []).append(out.hidden_states[j + 1][0, -1].numpy())
        assert value[(times, "P_SV", -1, -1)] == pytest.approx(np.mean(np.array(verdicts) == labels))
        assert value[(times, "yes_rate", -1, -1)] == pytest.approx(np.mean(verdicts))
        for key in [(0, 0), (1, times - 1), (2, times - 1)]:  # not the last layer: HF normalises it
            X = np.array(feats[key], dtype=np.float64)
            cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            expected = cross_val_score(clf, X, labels, cv=cv).mean()
            assert value[(times, "P_RR", *key)] == pytest.approx(expected, abs=1e-6), key
        answers = []
        for prompt in task.task_prompts:
            ids = model.tokenizer(prompt, return_tensors="pt").input_ids
            start = ids.shape[1]
            with torch.no_grad():
                for _ in range(task.max_new_tokens):
                    ids = torch.cat([ids, hf(input_ids=ids, use_cache=False).logits[:, -1:].argmax(-1)], dim=1)
            answers.append(model.tokenizer.decode(ids[0, start:].tolist()))
        solved = [task.check(item, text) for item, text in zip(task.items, answers, strict=True)]
        assert value[(times, "P_TP", -1, -1)] == pytest.approx(np.mean(solved))
    probes = table[(table.metric == "P_RR") & (table.loops == 2)]
    assert probes["step"].tolist() == list(range(model.n_layers + BLOCK[1] - BLOCK[0]))
    summary = L.verification_summary(table)
    assert summary["loops"].tolist() == [1, 2]
    best = probes["value"].max()
    assert summary.set_index("loops").loc[2, "sup_P_RR"] == pytest.approx(best)


def test_self_verification_resumes_from_a_checkpoint(tmp_path):
    from layerscope.results.io import Checkpoint

    model = tiny("llama")
    task = L.arithmetic_task(model, 20)
    path = tmp_path / "ckpt.jsonl"
    first = L.self_verification(
        model, task, BLOCK, [1], probe_layers=[3], folds=2, progress=False, checkpoint=Checkpoint(path, {"x": 1})
    )
    ckpt = Checkpoint(path, {"x": 1})
    assert ckpt.done(1) and not ckpt.done(2)
    both = L.self_verification(model, task, BLOCK, [1, 2], probe_layers=[3], folds=2, progress=False, checkpoint=ckpt)
    assert both[both.loops == 1].reset_index(drop=True).equals(first.reset_index(drop=True))
    assert set(both.loops) == {1, 2}


def test_probe_needs_both_labels():
    model = tiny("llama")
    task = L.arithmetic_task(model, 20)
    task.items = [dict(i, correct=True) for i in task.items]
    with pytest.raises(LayerscopeError, match="each oracle label"):
        L.self_verification(model, task, BLOCK, [1], progress=False)


# ---- concepts --------------------------------------------------------------------------------------


def test_concept_direction_is_a_difference_of_means():
    model = tiny("llama")
    concept = ["fire and fire", "the fire is red", "a big fire"]
    neutral = ["the city", "a new model of the tower", "hello"]
    got = L.concept_directions(model, concept, neutral, BLOCK, 1, 2)
    means = []
    for texts in (concept, neutral):
        # mean over each text's tokens (one unpadded HF forward each), then over texts, in numpy
        pooled = [hf_hidden_states(model, t)[3][0].numpy().astype(np.float64).mean(0) for t in texts]
        means.append(np.mean(pooled, axis=0))
    assert set(got) == {0}
    np.testing.assert_allclose(got[0].numpy(), means[0] - means[1], atol=1e-5)
    looped = L.concept_directions(model, concept, neutral, BLOCK, 3, 2)
    assert set(looped) == {0, 1, 2} and torch.allclose(looped[0], got[0], atol=1e-5)
    assert not torch.allclose(looped[2], got[0], atol=1e-3)


def test_injection_equals_a_hand_written_hook_on_the_looped_block():
    model = tiny("llama")
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(4))
    norm = L.reference_norm(model, PROMPTS, BLOCK, 3, 2, 1)
    iv = L.injection(direction, 2, 1, scale=0.5, norm=norm)
    ours = model.run(PROMPTS, loop=(*BLOCK, 3), interventions=[iv]).logits
    added = 0.5 * norm * direction / direction.norm()

    def hooks(hf):
        block = hf.get_submodule(model.adapter.blocks_path)[2]  # the same module object at every repeat
        calls = [0]

        def post(module, args, output):
            calls[0] += 1
            if calls[0] - 1 != 1:  # only the second pass through block 2 (iteration 1)
                return None
            return (output[0] + added, *output[1:]) if isinstance(output, tuple) else output + added

        return [(block, "post", post)]

    real = model.tokenize(PROMPTS).attention_mask.bool()  # the hook also adds at padding; compare real tokens
    ref, _ = looped_hidden(model, PROMPTS, 3, hooks=hooks)
    assert torch.allclose(ours[real], ref.logits[real], atol=1e-5)
    plain, _ = looped_hidden(model, PROMPTS, 3)
    assert not torch.allclose(ours[real], plain.logits[real], atol=1e-3)
    # the reference norm: median real-token norm of resid_post[2] at iteration 1
    tokens = plain.hidden_states[2 + 2 + 1][model.tokenize(PROMPTS).attention_mask.bool()]  # block list index 4
    assert norm == pytest.approx(float(tokens.norm(dim=-1).median()), rel=1e-5)
    with pytest.raises(LayerscopeError, match="never run"):
        L.reference_norm(model, PROMPTS, BLOCK, 3, 0, 1)
    with pytest.raises(LayerscopeError, match="zero"):
        L.injection(torch.zeros(model.d_model), 2, 0, 1.0)
    assert_clean(model)


def with_added(model, prompt: str, times: int, layer: int, iteration: int, vector: torch.Tensor) -> torch.Tensor:
    """``[1, vocab]`` last-position logits of the rebuilt looped model with ``vector`` added to block
    ``layer``'s output on its ``iteration``-th call (a raw forward hook on the repeated module)."""

    def hooks(hf):
        block = hf.get_submodule(model.adapter.blocks_path)[layer]
        calls = [0]

        def post(module, args, output):
            calls[0] += 1
            if calls[0] - 1 != iteration:
                return None
            return (output[0] + vector, *output[1:]) if isinstance(output, tuple) else output + vector

        return [(block, "post", post)]

    out, _ = looped_hidden(model, [prompt], times, hooks=hooks)
    return out.logits[:, -1]


def test_concept_injection_rows_and_the_zero_scale_invariant():
    model = tiny("llama")
    concepts = {"fire": ["the fire is red", "a big fire", "fire fire fire", "the red fire and the sun"]}
    neutral = ["the city", "a new model", "hello world", "the old tower", "a queen", "the river is blue"]
    kwargs = dict(concepts=concepts, neutral=neutral, progress=False)
    table = L.concept_injection(model, "fire", BLOCK, [1, 2], scale=2.0, **kwargs)
    assert list(table.columns) == ["model", "method", *L.INJECT_COLUMNS]
    assert [(r.loops, r.extract_iteration, r.inject_iteration) for r in table.itertuples()] == [
        (1, 0, 0),
        (2, 0, 0),
        (2, 0, 1),
        (2, 1, 0),
        (2, 1, 1),
    ]
    assert table["probe_detect"].between(0, 1).all() and table["p_yes"].between(0, 1).all()
    assert (table.groupby("loops")["p_yes_clean"].nunique() == 1).all()
    assert not np.allclose(table["p_yes"], table["p_yes_clean"])
    # the random-direction control: one per (loops, injection iteration), shared by the extraction iterations
    assert (table.groupby(["loops", "inject_iteration"])["p_yes_random"].nunique() == 1).all()
    assert not np.allclose(table["p_yes_random"], table["p_yes_clean"])
    row = table[(table.loops == 2) & (table.inject_iteration == 1)].iloc[0]
    control = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    detect = L.chat_prompt(model.tokenizer, L.INTROSPECTION_DETECT, "auto")
    norm = L.reference_norm(model, [detect], BLOCK, 2, row.inject_layer, 1)
    pushed = control / control.norm() * norm * 2.0
    hand = with_added(model, detect, 2, row.inject_layer, 1, pushed)
    yes = L.yes_no_scorer(model.tokenizer)(hand)
    assert row.p_yes_random == pytest.approx(float(yes[0, 0] / yes[0].sum()), abs=1e-5)
    zero = L.concept_injection(model, "fire", BLOCK, [2], scale=0.0, **kwargs)
    assert np.allclose(zero["p_yes_random"], zero["p_yes_clean"], atol=1e-6)
    assert np.allclose(zero["p_yes"], zero["p_yes_clean"], atol=1e-6)
    assert np.allclose(zero["p_word"], zero["p_word_clean"], atol=1e-6)
    assert (zero["probe_detect"] == zero["probe_baseline"]).all()
    # a layer outside the block has only iteration 0: the pairs collapse
    outside = L.concept_injection(model, "fire", BLOCK, [2], layer=0, **kwargs)
    assert len(outside) == 1
    with pytest.raises(LayerscopeError, match="unknown concept"):
        L.concept_injection(model, "tea", BLOCK, [1], **kwargs)


# ---- CLI ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir("llama", tmp_path_factory.mktemp("tiny-llama-loops"))


def test_cli_verify_json_plot_and_resume(capsys, model_dir, tmp_path):
    png, ckpt = tmp_path / "verify.png", tmp_path / "ckpt.jsonl"
    argv = [
        "loop",
        "verify",
        "--task",
        "arithmetic",
        "--n",
        "20",
        "--block",
        "1:3",
        "--loops",
        "1..2",
        "--probe-layers",
        "2,3",
        "--folds",
        "2",
        "--model",
        model_dir,
    ]
    code, out, err = run_cli(capsys, *argv, "--json", "--out", str(png), "--resume", str(ckpt))
    rows = json.loads(out)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert set(rows[0]) == {"model", "method", *L.VERIFY_COLUMNS}
    probes = [r for r in rows if r["metric"] == "P_RR" and r["loops"] == 2]
    assert [(r["layer"], r["iteration"]) for r in probes] == [(2, 0), (2, 1), (3, 0)]
    assert {r["metric"] for r in rows} == {"P_TP", "P_SV", "P_RR", "yes_rate", "p_yes"}
    code, again, err = run_cli(capsys, *argv, "--json", "--resume", str(ckpt))
    assert code == 0 and "resuming" in err and json.loads(again) == rows
    code, table, _ = run_cli(capsys, *argv)
    assert code == 0 and "sup_P_RR" in table and "P_SV" in table


def test_cli_inject_json_and_heatmap(capsys, model_dir, tmp_path):
    png = tmp_path / "inject.png"
    code, out, _ = run_cli(
        capsys,
        "loop",
        "inject",
        "--concept",
        "fire",
        "--block",
        "1:3",
        "--loops",
        "2",
        "--model",
        model_dir,
        "--json",
        "--out",
        str(png),
    )
    rows = json.loads(out)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert len(rows) == 4 and set(rows[0]) == {"model", "method", *L.INJECT_COLUMNS}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "--task", "arithmetic", "--block", "3:9"], "block"),
        (["verify", "--task", "arithmetic", "--loops", "0..2"], "loop counts"),
        (["inject", "--concept", "tea"], "unknown concept"),
        ([], "needs an action"),
    ],
)
def test_cli_bad_input(capsys, model_dir, argv, message):
    code, out, err = run_cli(capsys, "loop", *argv, "--model", model_dir) if argv else run_cli(capsys, "loop")
    last = err.strip().splitlines()[-1]  # (loading progress comes before it)
    assert code == 2 and out == "" and last.startswith("layerscope: error: ") and message in last


# ---- the default model -------------------------------------------------------------------------------


@pytest.mark.integration
def test_default_model_yes_no_and_a_small_verification(default_model):
    yes, no = L.yes_no_ids(default_model.tokenizer)
    assert len(yes) >= 2 and len(no) >= 2  # "Yes" and " Yes" are different tokens
    task = L.arithmetic_task(default_model, 12)
    assert task.verify_prompts[0].startswith("<|im_start|>")  # the chat template
    table = L.self_verification(default_model, task, None, [2], probe_layers=[-1], folds=2, progress=False)
    summary = L.verification_summary(table)
    assert summary["loops"].tolist() == [2]
    assert summary[["P_TP", "P_SV", "sup_P_RR"]].apply(lambda c: c.between(0, 1)).all().all()


# ---- freeze inside a looped block (engine: plan._freeze_replays) ---------------------------------------


@pytest.mark.parametrize(("layer", "record"), [(2, 0), (1, 0), (2, 1), (0, 0), (3, 0)])
def test_freeze_in_a_looped_block_replays_to_every_later_block_call(layer, record):
    """Reference: the rebuilt block list, where "later" is simply later in execution order."""
    import dataclasses

    model = tiny("llama")
    times, positions = 3, [0, 1, 2]
    iv = dataclasses.replace(ls.freeze(layer, positions), loop=record or None)
    ours = model.run(PROMPTS[1], loop=(*BLOCK, times), interventions=[iv]).logits

    def hooks(hf):
        blocks = hf.get_submodule(model.adapter.blocks_path)
        first = layer if layer < BLOCK[1] else layer + (times - 1) * (BLOCK[1] - BLOCK[0])  # index in the copy
        target = blocks[first]
        state = {"calls": 0, "frozen": None}

        def pre(module, args):
            # one shared counter over the distinct modules: call c of `layer` is iteration c
            if module is target and state["frozen"] is None:
                if state["calls"] == record:
                    state["frozen"] = args[0][:, positions].clone()
                    return None
                state["calls"] += 1
                return None
            if state["frozen"] is None:
                return None
            h = args[0].clone()
            h[:, positions] = state["frozen"]
            return (h, *args[1:])

        return [(block, "pre", pre) for block in dict.fromkeys(blocks)]

    ref, _ = looped_hidden(model, PROMPTS[1], times, hooks=hooks)
    assert torch.allclose(ours, ref.logits, atol=1e-5)
    assert_clean(model)


def test_freeze_at_an_iteration_that_never_runs():
    import dataclasses

    model = tiny("llama")
    for layer, record, loop in [(0, 1, (*BLOCK, 3)), (2, 3, (*BLOCK, 3)), (2, 1, None)]:
        with pytest.raises(LayerscopeError, match="never runs"):
            model.run(PROMPTS[1], loop=loop, interventions=[dataclasses.replace(ls.freeze(layer, [0]), loop=record)])
    assert_clean(model)


def test_demo_section_on_a_tiny_model(tmp_path):
    from layerscope.methods.loops.report import section_loops
    from layerscope.results.report import Report

    rows = section_loops(tiny("llama"), Report("t"), tmp_path)
    assert (tmp_path / "loops_verify.png").exists() and (tmp_path / "loops_inject.png").exists()
    assert {r["metric"] for r in rows} >= {"P_TP", "P_SV", "sup_P_RR"}
    assert all(0 <= r["value"] <= 1 for r in rows)
