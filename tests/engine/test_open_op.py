"""A user-written op goes through engine/plan.py by what it declares: shape checks, binding, fusion.

The ops here live only in this test (as a user's would); the planner has never heard of them.
"""

from dataclasses import dataclass

import pytest
import torch

from layerscope.engine.interventions import Intervention, Op
from layerscope.engine.plan import compile_plan
from layerscope.errors import InterventionError
from tests.conftest import tiny
from tests.helpers import assert_clean, site_hook, with_hooks

PROMPT = "the capital of france is"


@dataclass
class PullTowards(Op):
    """Move each state a share ``alpha`` of the way to a target ``[D]`` vector."""

    target: torch.Tensor
    alpha: float = 0.5
    value_field = "target"  # a [D] value: checked against d_model by the planner

    def transform(self, states, context):
        return states + self.alpha * (self.target.to(states.dtype) - states)


@dataclass
class Overwrite(Op):
    """Write one given state per selected state (like a patch), fusable across variants."""

    values: torch.Tensor
    value_field = "values"
    value_shape = "per_state"  # [D], [P, D] or [N, D]: bound to [N, D] per compiled intervention
    fusable = True

    def transform(self, states, context):
        return self.values.to(states.dtype)


def test_a_vector_op_equals_a_hand_written_hook():
    model = tiny("llama")
    target = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    out = model.run(PROMPT, interventions=[Intervention("resid_post", 1, [1, -1], PullTowards(target, 0.25))])

    def pull(h):
        h = h.clone()
        h[:, [1, -1]] = h[:, [1, -1]] + 0.25 * (target - h[:, [1, -1]])
        return h

    batch = model.tokenize(PROMPT)
    ref = with_hooks(model, [site_hook(model, "resid_post", 1, pull)], lambda: model.hf(**batch.model_inputs()).logits)
    torch.testing.assert_close(out.logits, ref)
    assert_clean(model)


def test_the_declared_value_is_shape_checked():
    model = tiny("llama")
    with pytest.raises(InterventionError, match=r"hidden-size mismatch.*3 dims.*d_model=32"):
        model.run(PROMPT, interventions=[Intervention("resid_post", 0, "last", PullTowards(torch.zeros(3)))])
    with pytest.raises(InterventionError, match=r"PullTowards needs a \[D\] vector"):
        model.run(PROMPT, interventions=[Intervention("resid_post", 0, "last", PullTowards(torch.zeros(2, 32)))])
    with pytest.raises(InterventionError, match=r"does not fit 2 selected states"):
        model.run(PROMPT, interventions=[Intervention("resid_post", 0, [0, 1], Overwrite(torch.zeros(3, 32)))])
    assert_clean(model)


def test_a_fusable_op_is_bound_fused_and_equals_each_variant_alone():
    model = tiny("llama")
    values = torch.randn(3, model.d_model, generator=torch.Generator().manual_seed(1))
    variants = [[Intervention("resid_pre", 2, "last", Overwrite(values[v]))] for v in range(3)]
    out = model.run(PROMPT, variants=variants, logits="last")
    alone = torch.cat([model.run(PROMPT, interventions=v, logits="last").last_logits for v in variants])
    torch.testing.assert_close(out.last_logits, alone, rtol=1e-5, atol=1e-5)
    # the planner fused the three writes into one, with the values bound to [N, D]
    batch = model.tokenize([PROMPT] * 3)
    rows = [v[0].on_rows([i]) for i, v in enumerate(variants)]
    (compiled,) = compile_plan(rows, batch, model.n_layers, model.d_model).at("resid_pre", 2)
    assert isinstance(compiled.op, Overwrite) and compiled.op.values.shape == (3, model.d_model)
    torch.testing.assert_close(compiled.op.values, values)
    assert compiled.rows.tolist() == [0, 1, 2]


def test_an_op_without_transform_says_how_to_write_one():
    class Nothing(Op):
        pass

    with pytest.raises(NotImplementedError, match=r"Nothing.transform\(states \[N, D\], context\) must return"):
        tiny("llama").run(PROMPT, interventions=[Intervention("resid_post", 0, "last", Nothing())])
    assert_clean(tiny("llama"))
