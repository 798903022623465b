"""``recipe="paper"|"authors"`` of Attend first against the authors' manipulations written out as hooks.

The authors' ``llama_manipulate.py`` (as the issue describes it): their freeze at k saves the input
of block k - 1 at the previous positions and writes it into the input of every block >= k; their
skip-attention drops the attention update at every position, the last one included; their switch
patches once, at the input of block k.
"""

import pytest
import torch

import layerscope.methods.attend as attend
from layerscope.errors import LayerscopeError
from tests.conftest import tiny
from tests.helpers import hf_logits, site_hook, with_hooks

pytestmark = pytest.mark.usefixtures("one_thread")

ITEM = attend.Item("what is the capital of spain ? the capital of france is", (" paris",))


def answer_prob(model, hooks) -> float:
    logits = with_hooks(model, hooks, lambda: hf_logits(model, ITEM.prompt))[0, -1]
    token = attend.answer_token_ids(model.tokenizer, ITEM.prompt, ITEM.answers[0])[1][0]
    return float(logits.float().softmax(-1)[token])


def authors_freeze_hooks(model, k: int):
    """Save the input of block k-1 at every position but the last; feed it to blocks k..L-1."""
    saved = {}

    def save(h):
        saved["h"] = h[:, :-1].clone()
        return h

    def replay(h):
        h = h.clone()
        h[:, :-1] = saved["h"]
        return h

    return [site_hook(model, "resid_pre", k - 1, save)] + [
        site_hook(model, "resid_pre", j, replay) for j in range(k, model.n_layers)
    ]


def all_position_skip_hooks(model, k: int):
    return [site_hook(model, "attn_out", j, torch.zeros_like) for j in range(k, model.n_layers)]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_authors_sweep_equals_their_freeze_and_skip(arch):
    model = tiny(arch)
    table = attend.sweep_task(
        model, [ITEM], ["freeze", "skip-attention"], recipe="authors", match="first-token", progress=False
    )
    assert set(table["recipe"]) == {"authors"} and set(table["skip_positions"]) == {"all"}
    freeze = table[table["manipulation"] == "freeze"].set_index("layer")["answer_prob"]
    skip = table[table["manipulation"] == "skip-attention"].set_index("layer")["answer_prob"]
    assert 0 not in freeze.index and list(skip.index) == list(range(model.n_layers))  # their freeze has no k = 0
    for k in range(1, model.n_layers):
        assert freeze[k] == pytest.approx(answer_prob(model, authors_freeze_hooks(model, k)), abs=1e-5)
    for k in range(model.n_layers):
        assert skip[k] == pytest.approx(answer_prob(model, all_position_skip_hooks(model, k)), abs=1e-5)
    # the paper's recipe: freeze of resid_pre[k], skip at previous positions only; the two differ
    paper = attend.sweep_task(model, [ITEM], ["freeze", "skip-attention"], match="first-token", progress=False)
    ours = paper[paper["manipulation"] == "freeze"].set_index("layer")["answer_prob"]
    for k in range(1, model.n_layers):
        assert ours[k - 1] == pytest.approx(freeze[k], abs=1e-6)  # their k = our k - 1
    # each knob on its own
    knobbed = attend.sweep_task(
        model, [ITEM], ["skip-attention"], skip_positions="all", match="first-token", progress=False
    )
    assert knobbed["answer_prob"].tolist() == pytest.approx(skip.tolist(), abs=1e-6)
    assert set(knobbed["recipe"]) == {"paper"}


def test_authors_switch_patches_once():
    model = tiny("llama")
    prompt, source = "what is the capital of france ?", "the country italy"
    authors = attend.switch(model, prompt, "france", source, "italy", [" paris"], recipe="authors")
    once = attend.switch(model, prompt, "france", source, "italy", [" paris"], every_layer=False)
    every = attend.switch(model, prompt, "france", source, "italy", [" paris"])
    assert authors["p_paris"].tolist() == pytest.approx(once["p_paris"].tolist(), abs=1e-7)
    assert bool(authors["once"].all()) and not bool(every["once"].any())
    assert set(authors["recipe"]) == {"authors"}


def test_authors_freeze_at_zero_is_an_error():
    with pytest.raises(LayerscopeError, match="k must be >= 1"):
        attend.manipulation("freeze", 0, freeze_index="authors")
    with pytest.raises(LayerscopeError):
        attend.sweep_task(tiny("llama"), [ITEM], ["freeze"], freeze_index="last", progress=False)
