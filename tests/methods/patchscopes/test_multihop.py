"""The multi-hop (CoT) Patchscope against a hand-written two-step hook loop on a tiny model."""

import pytest
import torch

from layerscope.methods.patchscopes.attributes import mentions
from layerscope.methods.patchscopes.multihop import eval_multihop, fill_placeholder, load_two_hop
from tests.conftest import tiny
from tests.methods.patchscopes.test_patchscopes import decode, hf_patched_greedy, hf_state

pytestmark = pytest.mark.usefixtures("one_thread")

FACTS = [
    {
        "question": "the capital of the country where the tower is located is",
        "hop1": "the tower is in the country of",
        "hop1_answer": "france",
        "hop2": "the capital of x is",
        "answer": "paris",
    },
    {
        "question": "the language of the country where the king was born is",
        "hop1": "the king was born in",
        "hop1_answer": "spain",
        "hop2": "the language of x is",
        "answer": "spanish",
    },
]
N = 3


def hand_two_step(model, fact: dict, l: int, l_star: int) -> str:
    """Step 1: resid_post[l] at hop 1's last token. Step 2: greedy hop 2 with it written at x, at l*."""
    last = len(model.tokenize(fact["hop1"]).prompts[0].tokens) - 1
    h = hf_state(model, fact["hop1"], l, last)
    x = fact["hop2"].split().index("x")  # the tiny tokenizer: one token per word ("x" is [UNK])
    with torch.no_grad():
        return decode(model, hf_patched_greedy(model, fact["hop2"], l_star, x, h, N))


def hand_greedy(model, prompt: str) -> str:
    with torch.no_grad():
        return decode(model, hf_patched_greedy(model, prompt, None, 0, None, N))


def test_multihop_equals_a_hand_written_two_step_loop():
    model = tiny("llama")
    # make the answers what the hand loop generates at one pair, so that "fixed" is exercised
    facts = [dict(f) for f in FACTS]
    facts[0]["answer"] = hand_two_step(model, facts[0], 1, 2).split()[0]
    result = eval_multihop(model, facts, source_layers=[0, 1, 3], target_layers=[0, 2], max_new_tokens=N)
    items = result["items"]
    assert len(items) == len(facts) * 3 * 2
    for row in items.itertuples():
        fact = facts[row.fact]
        text = hand_two_step(model, fact, row.source_layer, row.target_layer)
        assert row.text == text
        assert row.correct == mentions(text, [fact["answer"]])
    baseline = result["baseline"].set_index("fact")
    for i, fact in enumerate(facts):
        assert baseline.loc[i, "end_to_end"] == mentions(hand_greedy(model, fact["question"]), [fact["answer"]])
        assert baseline.loc[i, "hop1"] == mentions(hand_greedy(model, fact["hop1"]), [fact["hop1_answer"]])
        filled = fill_placeholder(fact["hop2"], fact["hop1_answer"])
        assert baseline.loc[i, "hop2"] == mentions(hand_greedy(model, filled), [fact["answer"]])
    # fixed = share of the end-to-end-wrong facts answered correctly at that pair
    wrong = set(baseline.index[~baseline["end_to_end"]])
    pairs = result["pairs"].set_index(["source_layer", "target_layer"])
    for (l, s), group in items.groupby(["source_layer", "target_layer"]):
        expected = group[group["fact"].isin(wrong)]["correct"].sum() / len(wrong) if wrong else 0.0
        assert pairs.loc[(l, s), "fixed"] == pytest.approx(expected)
        assert pairs.loc[(l, s), "accuracy"] == pytest.approx(group["correct"].mean())
    summary = result["summary"].iloc[0]
    assert summary["n"] == 2 and summary["wrong_end_to_end"] == len(wrong)
    assert summary["end_to_end_accuracy"] == pytest.approx(baseline["end_to_end"].mean())


def test_shipped_two_hop_facts():
    facts = load_two_hop()
    assert len(facts) >= 40
    keys = {"relation", "question", "hop1", "hop1_answer", "hop2", "answer", "answer_aliases"}
    assert all(set(f) == keys for f in facts)
    assert all(" x " in f" {f['hop2']} " for f in facts)
    assert len({f["question"] for f in facts}) == len(facts)
    assert all(f["hop1_answer"].lower() not in f["question"].lower() for f in facts)  # the bridge stays hidden


def test_multihop_cli(capsys, tmp_path, monkeypatch):
    import json

    import layerscope.methods.patchscopes.multihop as multihop
    from tests.conftest import save_model_dir
    from tests.helpers import run_cli

    monkeypatch.setattr(multihop, "load_two_hop", lambda limit=None: FACTS[:limit])
    folder = save_model_dir("llama", tmp_path)
    code, out, err = run_cli(
        capsys, "eval", "multihop", "--model", folder, "--source-layers", "0,2", "--target-layers", "1", "--json"
    )
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2 and {"accuracy", "fixed", "source_layer", "target_layer"} <= set(rows[0])
    assert "patching fixes" in err


def test_authors_recipe_samples_position_0_never_the_last():
    from layerscope.methods.patchscopes.evaluate import sample_positions

    model = tiny("llama")
    text = "the capital of france is paris"
    n = len(model.tokenize(text).prompts[0].tokens)
    assert sample_positions(model, [text])[0].position == list(range(1, n))
    assert sample_positions(model, [text], recipe="authors")[0].position == list(range(0, n - 1))


def test_authors_item_filter_keeps_what_the_model_completes():
    from layerscope.methods.patchscopes.attributes import known_items

    model = tiny("llama")
    said = hand_greedy(model, "the capital of france is").split()[0]
    rows = [
        {"template": "the capital of x is", "subject": "france", "object": said},
        {"template": "the capital of x is", "subject": "france", "object": "zzzz"},
    ]
    assert known_items(model, rows, max_new_tokens=N) == rows[:1]
