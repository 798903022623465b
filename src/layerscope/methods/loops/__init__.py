"""Loop as a Bridge (arXiv 2601.10242): looped layers, probes per (layer, loop), self-verification
and concept injection on any pretrained model.

A *looped* model runs its block ``[a, b)`` ``n`` times in a row (``n = 1`` is the plain model); the
engine does the looping (``model.run(..., loop=(a, b, n))``) and keys every captured state by
``(layer, iteration)``. In execution order a looped model with ``L`` layers runs::

    (0, 0) .. (a-1, 0), (a, 0) .. (b-1, 0), (a, 1) .. (b-1, 1), ..., (a, n-1) .. (b-1, n-1), (b, 0) .. (L-1, 0)

(:func:`execution_order`); ``step`` is the index in that list. Layers outside the block only have
iteration 0, and an intervention names its iteration with :func:`at_iteration`.

What this module measures (METHODS.md section 4), for a task with an oracle verifier V(T, A):

- ``P_TP``: how often the model's own greedy answer to the task is correct;
- ``P_SV``: how often the model's language self-verification of a (question, answer) pair
  ("... Answer Yes or No.", read as P(Yes) vs P(No) at the next token) agrees with V;
- ``P_RR(step)``: cross-validated accuracy of a linear probe (:func:`layerscope.readout.probes.probe_accuracy`)
  on the verification prompt's last-token ``resid_post`` at each (layer, iteration), predicting V;

each per loop count. Concepts: a direction by difference of means (concept sentences minus neutral
sentences) at (layer, iteration), injected (norm-relative) at another (layer, iteration), and
detected per (extraction iteration, injection iteration) pair by a read-out probe and by asking the
model (an introspection prompt scored by P(Yes) and by naming the concept).

Lower layers do not change with the loop count, so :func:`loop_states` runs them once and starts
the other loop counts at block ``a`` from the captured ``resid_pre[a]`` (``run(start_layer=a)``).
"""

from layerscope._lazy import lazy_exports

# the API, imported on first use (importing the package, as the CLI does, must not import torch)
_EXPORTS = {
    "INJECT_COLUMNS": "layerscope.methods.loops.inject:INJECT_COLUMNS",
    "INTROSPECTION_DETECT": "layerscope.methods.loops.inject:INTROSPECTION_DETECT",
    "INTROSPECTION_NAME": "layerscope.methods.loops.inject:INTROSPECTION_NAME",
    "concept_directions": "layerscope.methods.loops.inject:concept_directions",
    "concept_injection": "layerscope.methods.loops.inject:concept_injection",
    "concept_injections": "layerscope.methods.loops.inject:concept_injections",
    "injection": "layerscope.methods.loops.inject:injection",
    "reference_norm": "layerscope.methods.loops.inject:reference_norm",
    "variant_states": "layerscope.methods.loops.inject:variant_states",
    "chat_prompt": "layerscope.methods.loops.prompts:chat_prompt",
    "LoopStates": "layerscope.methods.loops.runner:LoopStates",
    "loop_generate": "layerscope.methods.loops.runner:loop_generate",
    "loop_states": "layerscope.methods.loops.runner:loop_states",
    "ORACLE_TASKS": "layerscope.methods.loops.spec:ORACLE_TASKS",
    "Block": "layerscope.methods.loops.spec:Block",
    "at_iteration": "layerscope.methods.loops.spec:at_iteration",
    "default_block": "layerscope.methods.loops.spec:default_block",
    "execution_order": "layerscope.methods.loops.spec:execution_order",
    "parse_block": "layerscope.methods.loops.spec:parse_block",
    "parse_loops": "layerscope.methods.loops.spec:parse_loops",
    "ARITHMETIC_TASK": "layerscope.methods.loops.tasks:ARITHMETIC_TASK",
    "ARITHMETIC_VERIFY": "layerscope.methods.loops.tasks:ARITHMETIC_VERIFY",
    "HARMFUL_TASK": "layerscope.methods.loops.tasks:HARMFUL_TASK",
    "HARMFUL_VERIFY": "layerscope.methods.loops.tasks:HARMFUL_VERIFY",
    "OracleTask": "layerscope.methods.loops.tasks:OracleTask",
    "arithmetic_task": "layerscope.methods.loops.tasks:arithmetic_task",
    "harmful_task": "layerscope.methods.loops.tasks:harmful_task",
    "load_oracle_task": "layerscope.methods.loops.tasks:load_oracle_task",
    "VERIFY_COLUMNS": "layerscope.methods.loops.verify:VERIFY_COLUMNS",
    "self_verification": "layerscope.methods.loops.verify:self_verification",
    "verification_summary": "layerscope.methods.loops.verify:verification_summary",
    "word_token_ids": "layerscope.readout.tokens:word_token_ids",
    "yes_no_ids": "layerscope.readout.tokens:yes_no_ids",
    "yes_no_scorer": "layerscope.readout.tokens:yes_no_scorer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
