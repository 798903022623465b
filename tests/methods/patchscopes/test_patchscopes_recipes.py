"""``patchscope(recipe="authors")`` against the authors' ``inspect`` (``patchscopes_utils.py``) written out here.

Their source state is ``output["hidden_states"][layer_source + 1][0][position_source]`` of a plain HF
run (the last layer's after the final norm); it replaces the output of block l* at the target
position, or, when l = l* = the last layer, the output of the final norm (``skip_final_ln``).
"""

import pytest
import torch

from layerscope.errors import LayerscopeError
from layerscope.methods.patchscopes import patchscope
from tests.conftest import tiny
from tests.helpers import hf_logits, site_hook, with_hooks

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = "the capital of france is paris"
TARGET = "cat -> cat ; hello -> hello ; x"


def their_next_token(model, l: int, l_star: int) -> tuple[int, float]:
    enc = model.tokenizer(SOURCE, return_tensors="pt")
    with torch.no_grad():
        hidden = model.hf(**enc, output_hidden_states=True).hidden_states
    h = hidden[l + 1][0][-1]
    position = len(model.tokenizer(TARGET)["input_ids"]) - 1

    def put(state):
        state = state.clone()
        state[0, position] = h
        return state

    last = model.n_layers - 1
    if l == l_star == last:
        hook = (model.adapter.final_norm, "post", lambda module, args, out: put(out))
    else:
        hook = site_hook(model, "resid_post", l_star, put)
    probs = with_hooks(model, [hook], lambda: hf_logits(model, TARGET))[0, -1].float().softmax(-1)
    prob, token = probs.max(-1)
    return int(token), float(prob)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_authors_recipe_is_their_inspect(arch):
    model = tiny(arch)
    last = model.n_layers - 1
    kwargs = {"target_layers": "all", "target_position": "last", "max_new_tokens": 0}
    table = patchscope(model, SOURCE, "last", TARGET, "all", recipe="authors", **kwargs)
    assert set(table["recipe"]) == {"authors"} and set(table["source_last"]) == {"post-norm"}
    for row in table.itertuples():
        token, prob = their_next_token(model, row.source_layer, row.target_layer)
        where = (row.source_layer, row.target_layer)
        assert row.top_token_id == token and row.prob == pytest.approx(prob, abs=1e-5), where
    paper = patchscope(model, SOURCE, "last", TARGET, "all", **kwargs)
    assert set(paper["source_last"]) == {"pre-norm"}
    merged = paper.merge(table, on=["source_layer", "target_layer"], suffixes=("_paper", "_authors"))
    differ = (merged["prob_paper"] - merged["prob_authors"]).abs() > 1e-6
    # only the last source layer into an earlier target layer differs; (L-1, L-1) is the same both ways
    assert set(merged.loc[differ, "source_layer"]) == {last}
    assert not differ[(merged["source_layer"] == last) & (merged["target_layer"] == last)].any()
    assert differ[(merged["source_layer"] == last) & (merged["target_layer"] < last)].all()
    knob = patchscope(model, SOURCE, "last", TARGET, "all", source_last="post-norm", **kwargs)
    assert knob["prob"].tolist() == pytest.approx(table["prob"].tolist(), abs=1e-7)


def test_bad_source_last_is_an_error():
    with pytest.raises(LayerscopeError, match="source_last must be one of pre-norm, post-norm"):
        patchscope(tiny("llama"), SOURCE, "last", TARGET, 0, source_last="final", max_new_tokens=0)
