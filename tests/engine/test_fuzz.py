"""A property-based fuzz of the engine API on a tiny model: every call either runs or raises a
:class:`LayerscopeError` whose message names the problem, never a bare TypeError/IndexError/
RuntimeError, and the model is left unhooked either way."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layerscope as ls
from layerscope.errors import LayerscopeError
from tests.conftest import tiny

PROMPT = "the capital of france is paris"
N_LAYERS, D = 4, 32  # the tiny llama
SITES = ["resid_pre", "resid_post", "attn_out", "mlp_out"]

small_ints = st.integers(-7, 7)
layer_specs = st.one_of(
    small_ints,
    st.floats(-5, 5),
    st.just(float("nan")),
    st.booleans(),
    st.none(),
    st.sampled_from(["all", "1:3", "2:", ":0", "5", "a", "1:2:0", "0,1", "", "3:1", "1.5"]),
    st.builds(
        slice, st.one_of(st.none(), small_ints), st.one_of(st.none(), small_ints), st.one_of(st.none(), small_ints)
    ),
    st.builds(range, small_ints, small_ints),
    st.lists(st.one_of(small_ints, st.floats(0, 3), st.text(max_size=2)), max_size=3),
)
position_specs = st.one_of(
    small_ints,
    st.floats(-3, 3),
    st.booleans(),
    st.none(),
    st.sampled_from(["all", "last", "previous", "paris", "capital", "nowhere", ""]),
    st.builds(
        slice, st.one_of(st.none(), small_ints), st.one_of(st.none(), small_ints), st.one_of(st.none(), small_ints)
    ),
    st.lists(st.one_of(small_ints, st.sampled_from(["paris", "france", "zzz"]), st.floats(0, 2)), max_size=3),
)
seeds = st.one_of(st.integers(-(2**70), 2**70), st.floats(-2, 2), st.text(max_size=2))
values = st.one_of(
    st.floats(-2, 2),
    st.sampled_from([(D,), (D + 1,), (2, D), (1, 1, D), (), (6, D), (0, D)]).map(lambda s: torch.ones(s)),
    st.lists(st.floats(-1, 1), max_size=3),
)


@st.composite
def interventions(draw):
    site = draw(st.one_of(st.sampled_from(SITES), st.just("bogus")))
    layers, positions = draw(layer_specs), draw(position_specs)
    kind = draw(st.sampled_from(["zero", "mean", "random", "shuffle", "patch", "add", "freeze", "skip", "apply"]))
    if kind == "zero":
        return ls.zero(site, layers, positions)
    if kind == "mean":
        return ls.mean(site, layers, positions)
    if kind == "random":
        return ls.random(site, layers, positions, seed=draw(seeds))
    if kind == "shuffle":
        return ls.shuffle(site, layers, positions, seed=draw(seeds))
    if kind == "patch":
        return ls.patch(site, layers, positions, draw(values))
    if kind == "add":
        return ls.add(
            site, layers, positions, draw(values), scale=draw(st.one_of(st.floats(-2, 2), st.text(max_size=1)))
        )
    if kind == "freeze":
        return ls.freeze(layers, positions)
    if kind == "skip":
        return ls.skip_attention(layers, positions)
    return ls.apply(site, layers, positions, lambda states, context: states * 2)


def call(fn):
    """``fn()``: fine, or a LayerscopeError with a message; anything else fails the property."""
    try:
        fn()
    except LayerscopeError as error:
        assert str(error).strip(), "an error without a message"


def assert_unhooked(model):
    from tests.helpers import assert_clean

    assert_clean(model)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(scope="module")
def model():
    return tiny("llama")


@FUZZ
@given(data=st.data())
def test_run_with_any_intervention_runs_or_says_why(model, data):
    loop = data.draw(st.one_of(st.none(), st.tuples(small_ints, small_ints, st.integers(-1, 3))))
    capture = data.draw(
        st.one_of(st.none(), st.sampled_from(["resid_post", "bogus"]), st.tuples(st.sampled_from(SITES), layer_specs))
    )

    def run():
        iv = data.draw(interventions())
        model.run(PROMPT, interventions=[iv], capture=capture, loop=loop, logits="last")

    call(run)
    assert_unhooked(model)


@FUZZ
@given(data=st.data())
def test_generate_with_any_intervention_runs_or_says_why(model, data):
    mode = data.draw(st.sampled_from(["prompt", "every_step", "bogus"]))
    options = {
        "max_new_tokens": data.draw(st.integers(1, 2)),
        "do_sample": data.draw(st.booleans()),
        "temperature": data.draw(st.floats(0.1, 2)),
        "top_k": data.draw(st.one_of(st.none(), st.integers(1, 5))),
        "seed": data.draw(st.integers(0, 2**63 - 1)),
    }

    def generate():
        model.generate(PROMPT, interventions=[data.draw(interventions())], mode=mode, **options)

    call(generate)
    assert_unhooked(model)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"seed": 2**64}, id="seed-beyond-int64"),
        pytest.param({"seed": 1.5}, id="float-seed"),
        pytest.param({"do_sample": True, "temperature": -1.0}, id="negative-temperature"),
        pytest.param({"do_sample": True, "top_k": -1}, id="negative-top-k"),
        pytest.param({"do_sample": True, "top_p": 1.5}, id="top-p-above-1"),
        pytest.param({"max_new_tokens": 0}, id="no-new-token"),
    ],
)
def test_invalid_generation_options_are_layerscope_errors(model, options):
    with pytest.raises(LayerscopeError):
        model.generate(PROMPT, max_new_tokens=options.pop("max_new_tokens", 1), **options)
    assert_unhooked(model)


@FUZZ
@given(
    site=st.one_of(st.sampled_from(SITES), st.text(max_size=3)),
    layer=st.one_of(small_ints, st.text(max_size=2), st.floats(0, 2)),
)
def test_result_get_names_the_problem(model, site, layer):
    result = model.run(PROMPT, capture="resid_post", logits=None)
    call(lambda: result.get(site, layer))


def test_mixed_position_list_in_every_step_generation(model):
    # valid input (the README allows mixed lists): a substring beside an int, at every step
    out = model.generate(
        "the capital of france is paris",
        interventions=[ls.zero("resid_pre", 1, [0, "paris"])],
        mode="every_step",
        max_new_tokens=2,
    )
    assert out.tokens.shape == (1, 2)


def test_result_get_negative_layers_and_string_layers(model):
    from dataclasses import replace

    result = model.run(PROMPT, capture="resid_post", logits=None)
    known = replace(result, n_layers=N_LAYERS)  # what engine/run.py sets (see the note in result.py)
    assert torch.equal(known.get("resid_post", -1), known.get("resid_post", N_LAYERS - 1))
    with pytest.raises(LayerscopeError, match="does not exist"):
        known.get("resid_post", -N_LAYERS - 1)
    unknown = replace(result, n_layers=None)
    with pytest.raises(LayerscopeError, match="counts from the end") as error:
        unknown.get("resid_post", -1)
    assert "not captured" not in str(error.value)
    with pytest.raises(LayerscopeError, match="layer must be an int.*string"):
        result.get("resid_post", "3")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ls.zero("resid_pre", 1.0), "cannot read layers 1.0"),
        (lambda: ls.zero("resid_pre", slice(1.0, 3)), "layer start .* must be an int"),
        (lambda: ls.zero("resid_pre", slice(None, None, 0)), "step .* must be >= 1"),
        (lambda: ls.zero("resid_pre", []), "layer list is empty"),
        (lambda: ls.zero("resid_pre", "1:9"), "beyond the model"),  # as `9` is: never silently clipped
        (lambda: ls.zero("resid_pre", 1, slice(None, None, 0)), "step .* must not be 0"),
        (lambda: ls.zero("resid_pre", 1, [0, 1.5]), "position 1.5"),
        (lambda: ls.zero("resid_pre", 1, []), "position list is empty"),
        (lambda: ls.patch("resid_pre", 1, 0, 3.0), "scalar"),
        (lambda: ls.patch("resid_pre", 1, 0, torch.tensor(3.0)), "scalar"),
        (lambda: ls.random("resid_pre", 1, 0, seed=2**63), "outside int64"),
        (lambda: ls.shuffle("resid_pre", 1, 0, seed=-(2**63) - 1), "outside int64"),
        (lambda: ls.random("resid_pre", 1, 0, seed=0.5), "seed must be an int"),
        (lambda: ls.add("resid_pre", 1, 0, torch.ones(D), scale="2"), "scale must be a number"),
        (lambda: ls.freeze(1.5), "one int layer"),
        (lambda: ls.apply("resid_pre", 1, 0, "not a function"), "needs a function"),
    ],
)
def test_each_invalid_spec_of_the_issue_names_its_problem(model, make, message):
    with pytest.raises(LayerscopeError, match=message):
        model.run(PROMPT, interventions=[make()], logits="last")
    assert_unhooked(model)


def test_an_iteration_that_never_runs_is_refused(model):
    from dataclasses import replace

    later = replace(ls.zero("resid_pre", 1, 0), loop=2)
    with pytest.raises(LayerscopeError, match="never runs"):
        model.run(PROMPT, interventions=[later], logits="last")  # no loop at all
    with pytest.raises(LayerscopeError, match="never runs"):
        model.run(PROMPT, interventions=[later], loop=(1, 3, 2), logits="last")  # iterations 0 and 1 only
    model.run(PROMPT, interventions=[later], loop=(1, 3, 3), logits="last")  # iteration 2 runs

