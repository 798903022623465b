"""Layer by Layer (Skean et al., ICML 2025): representation metrics and linear probes per depth.

*Depth* ``d = 0..L`` indexes the residual stream of an ``L``-layer model: ``d = 0`` is the
embedding output (``resid_pre[0]``) and ``d = l + 1`` is ``resid_post[l]``, the output of block
``l`` -- *before* the final norm (so depth ``L`` differs from HF's last ``hidden_states`` entry on
decoders, which is after the final norm; for BERT there is no final norm and they agree).

Memory and time: the states of all prompts at all depths are never held at once.  Texts are
run in chunks sorted by token count (little padding), each as large as ``batch_budget`` allows
and at most ``batch_size`` (:func:`plan_chunks`); per-prompt metrics (prompt entropy, curvature)
are accumulated as sums over prompts, and dataset-level metrics (dataset entropy, effective rank,
InfoNCE, LiDAR, DiME, probes) keep only the pooled vectors ``[L + 1, N, D]``.  The forward
passes dominate the cost: the metric math on ``[L + 1, N, D]`` takes seconds (see
:mod:`layerscope.metrics`).

LiDAR runs ``n_augmentations`` augmented copies of every prompt, so by default it uses only the
first ``lidar_limit = 64`` texts (64 x 16 = 1024 forward rows, the most expensive metric).

Several models side by side: :func:`compare_models` and :func:`compare_probes` return one tidy
table with a ``model`` column and ``relative_depth = depth / L`` (0 to 1), as in the paper's
figures; :func:`top_dimensions` finds massive-activation dimensions and ``drop_dims`` ablates them.
"""

from layerscope._lazy import lazy_exports

# the API, imported on first use (importing the package, as the CLI does, must not import torch)
_EXPORTS = {
    "compare_models": "layerscope.methods.layer_by_layer.compare:compare_models",
    "compare_probes": "layerscope.methods.layer_by_layer.compare:compare_probes",
    "probe_summary": "layerscope.methods.layer_by_layer.compare:probe_summary",
    "top_dimensions": "layerscope.methods.layer_by_layer.dimensions:top_dimensions",
    "best_vs_last": "layerscope.methods.layer_by_layer.probing:best_vs_last",
    "probe_layers": "layerscope.methods.layer_by_layer.probing:probe_layers",
    "DEFAULT_METRICS": "layerscope.methods.layer_by_layer.representation:DEFAULT_METRICS",
    "METRIC_NAMES": "layerscope.methods.layer_by_layer.representation:METRIC_NAMES",
    "canonical_metric": "layerscope.methods.layer_by_layer.representation:canonical_metric",
    "representation_metrics": "layerscope.methods.layer_by_layer.representation:representation_metrics",
    "DEFAULT_BATCH_SIZE": "layerscope.methods.layer_by_layer.defaults:DEFAULT_BATCH_SIZE",
    "depth_states": "layerscope.methods.layer_by_layer.states:depth_states",
    "iter_depth_batches": "layerscope.methods.layer_by_layer.states:iter_depth_batches",
    "iter_depth_states": "layerscope.methods.layer_by_layer.states:iter_depth_states",
    "plan_chunks": "layerscope.methods.layer_by_layer.states:plan_chunks",
    "pooled_states": "layerscope.methods.layer_by_layer.states:pooled_states",
    "token_lengths": "layerscope.methods.layer_by_layer.states:token_lengths",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
