"""The logit lens grid: every (layer, position) read through the model's own final norm and
unembedding, checked against hand-written HF hooks; one lens family with the Patchscopes readout."""

import pytest
import torch

import layerscope as ls
from layerscope.readout.lenses import Lens, LogitLens
from tests.conftest import tiny
from tests.helpers import assert_clean, hand_logit_lens

PROMPTS = ["the capital of france is", "hello world"]


@pytest.mark.parametrize("top_k", [1, 2])
def test_grid_equals_hand_written_hooks(top_k):
    model = tiny("llama")
    table = ls.lens.logit_lens(model, PROMPTS, top_k=top_k)
    assert set(table["model"]) == {model.name} and set(table["method"]) == {"logit_lens"}
    for b, prompt in enumerate(PROMPTS):
        ref = hand_logit_lens(model, prompt)  # [L, T, V]
        top = ref.topk(top_k, dim=-1)
        rows = table[table["prompt"] == b]
        assert len(rows) == model.n_layers * ref.shape[1] * top_k
        for row in rows.itertuples():
            assert row.prob == pytest.approx(float(top.values[row.layer, row.position, row.rank]), abs=1e-5)
            assert row.top_token == model.tokenizer.decode([int(top.indices[row.layer, row.position, row.rank])])
    assert_clean(model)


def test_the_lens_grid_and_the_patchscopes_lens_readout_agree():
    model = tiny("llama")
    grid = ls.lens.logit_lens(model, PROMPTS[0], layers=[1, 3])
    readout = ls.patchscopes.logit_lens(model, PROMPTS[0], position="all", layers=[1, 3])
    for row in readout.itertuples():
        (cell,) = grid[(grid["layer"] == row.source_layer) & (grid["position"] == row.source_position)].itertuples()
        assert (cell.top_token, cell.prob) == (row.top_token, pytest.approx(row.prob, abs=1e-6))


def test_any_lens_of_the_family_reads_the_same_grid():
    class Shifted(Lens):
        """A lens that adds a fixed vector before the unembedding (any transform of the family)."""

        name = "shifted"

        def __init__(self, shift):
            self.shift = shift

        def transform(self, h, layer):
            return h + self.shift

    model = tiny("llama")
    shift = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    table = ls.lens.logit_lens(model, PROMPTS[0], layers=[2], lens=Shifted(shift))
    states = model.run(PROMPTS[0], capture=("resid_post", 2)).get("resid_post", 2)[0]  # [T, D]
    with torch.no_grad():
        probs = model.adapter.unembed_states(states + shift).softmax(-1)
    assert set(table["method"]) == {"shifted"}
    torch.testing.assert_close(torch.tensor(table["prob"].tolist()), probs.max(-1).values, atol=1e-5, rtol=0)
    assert LogitLens().transform(states, 2) is states
