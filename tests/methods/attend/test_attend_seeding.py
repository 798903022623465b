"""``seeding="authors"``: the random vectors and permutations of the authors' code, draw for draw.

The reference below transcribes ``DistruptClass.apply_random_switch`` and ``apply_shuffle_random``
of ``convert_models/manipulations_utils.py`` (schwartz-lab-NLP/Attend-First-Consolidate-Later): at
the input of block k, for every token but the last in order, ``v = torch.randn_like(h)`` from
torch's global generator, rescaled ``(v / ||v||) * ||h||``; or ``torch.manual_seed(k * token)``,
``torch.randperm(D)``, ``h[perm]``. Their forward pass runs one prompt, so the reference does too,
after ``torch.manual_seed(seed)``, on torch's *global* generator (the engine uses its own).
"""

import pytest
import torch

import layerscope.methods.attend as attend
from layerscope.engine import interventions as iv
from layerscope.errors import LayerscopeError
from tests.conftest import tiny
from tests.helpers import hf_logits, site_hook, with_hooks

pytestmark = pytest.mark.usefixtures("one_thread")

ITEMS = [
    attend.Item("what is the capital of spain ? the capital of france is", (" paris",)),
    attend.Item("the capital of italy is", (" rome",)),
]


def their_random(h: torch.Tensor) -> torch.Tensor:
    """``apply_random_switch`` on ``h [1, T, D]``, tokens 0..T-2, global generator."""
    h = h.clone()
    for token_idx in range(h.shape[1] - 1):
        v = torch.randn_like(h[0][token_idx])
        v = (v / torch.norm(v, 2)) * torch.norm(h[0][token_idx], 2)
        h[0][token_idx] = v
    return h


def their_shuffle(idx: int):
    def shuffle(h: torch.Tensor) -> torch.Tensor:
        h = h.clone()
        for token_idx in range(h.shape[1] - 1):
            torch.manual_seed(idx * token_idx)
            indexes = torch.randperm(h[0, token_idx, :].shape[-1])
            h[0][token_idx] = h[0][token_idx][indexes]
        return h

    return shuffle


def their_last_logits(model, prompt: str, hook, k: int, seed: int) -> torch.Tensor:
    """The last position's logits with their manipulation at ``resid_pre[k]``, seeded as a fresh run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return with_hooks(model, [site_hook(model, "resid_pre", k, hook)], lambda: hf_logits(model, prompt))[0, -1]


def answer_prob(model, item, logits) -> float:
    token = attend.answer_token_ids(model.tokenizer, item.prompt, item.answers[0])[1][0]
    return float(logits.float().softmax(-1)[token])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_authors_seeding_equals_their_draws_in_the_sweep(arch):
    model, seed = tiny(arch), 3
    table = attend.sweep_task(
        model, ITEMS, ["random", "shuffle"], recipe="authors", seed=seed, match="first-token", progress=False
    )
    assert set(table["seeding"]) == {"authors"} and set(table["recipe"]) == {"authors"}
    for name in ("random", "shuffle"):
        got = table[table["manipulation"] == name].set_index("layer")["answer_prob"]
        assert list(got.index) == list(range(model.n_layers))
        for k in range(model.n_layers):
            hook = their_random if name == "random" else their_shuffle(k)
            want = sum(answer_prob(model, it, their_last_logits(model, it.prompt, hook, k, seed)) for it in ITEMS)
            assert got[k] == pytest.approx(want / len(ITEMS), abs=1e-6), (name, k)


def test_authors_states_are_their_states_in_a_padded_batch():
    """In a left-padded batch of two prompts each row gets its own prompt's draws (token index, not position)."""
    model, seed, k = tiny("llama"), 11, 1
    prompts = [ITEMS[0].prompt, ITEMS[1].prompt]
    for name, op, hook in [
        ("random", iv.random, their_random),
        ("shuffle", iv.shuffle, their_shuffle(k)),
    ]:
        ours = model.run(
            prompts, interventions=[op("resid_pre", k, "previous", seed=seed, seeding="authors")], logits="last"
        ).last_logits
        for row, prompt in enumerate(prompts):
            want = their_last_logits(model, prompt, hook, k, seed)
            torch.testing.assert_close(ours[row], want, rtol=0, atol=1e-5, msg=f"{name} row {row}")


def test_layerscope_seeding_differs_and_each_knob_overrides():
    model = tiny("llama")
    kwargs = {"match": "first-token", "progress": False, "layers": [1]}
    paper = attend.sweep_task(model, ITEMS[:1], ["shuffle"], **kwargs)
    knob = attend.sweep_task(model, ITEMS[:1], ["shuffle"], seeding="authors", **kwargs)
    authors = attend.sweep_task(model, ITEMS[:1], ["shuffle"], recipe="authors", **kwargs)
    back = attend.sweep_task(model, ITEMS[:1], ["shuffle"], recipe="authors", seeding="layerscope", **kwargs)
    assert set(paper["seeding"]) == {"layerscope"} and set(knob["seeding"]) == {"authors"}
    assert knob["answer_prob"].tolist() == pytest.approx(authors["answer_prob"].tolist(), abs=1e-7)
    assert back["answer_prob"].tolist() == pytest.approx(paper["answer_prob"].tolist(), abs=1e-7)
    # the two seedings permute differently (the tiny model's answer probability barely moves, its states do);
    # random's per-token float32 draws on the CPU continue one stream, as our one [n, D] draw does, so
    # the two random seedings agree there up to rounding (they part on CUDA and in other dtypes)
    runs = {
        seeding: model.run(
            ITEMS[0].prompt, interventions=[iv.shuffle("resid_pre", 1, seeding=seeding)], capture=("resid_post", 1)
        ).get("resid_post", 1)
        for seeding in ("layerscope", "authors")
    }
    assert (runs["layerscope"] - runs["authors"]).abs().max() > 1e-2


def test_bad_seeding_is_an_error():
    with pytest.raises(LayerscopeError, match="seeding must be one of layerscope, authors"):
        attend.sweep_task(tiny("llama"), ITEMS, ["random"], seeding="numpy", progress=False)
    with pytest.raises(LayerscopeError, match="seeding must be one of"):
        iv.random("resid_pre", 0, seeding="global")
