"""Report plots: accuracies and probabilities on a fixed [0, 1] colour scale or axis, whole-number
layer ticks, a chance line on probe plots, error bars that never leave [0, 1]."""

import numpy as np
import pandas as pd
import pytest

from layerscope.results.figures import clipped_errors


@pytest.fixture
def figures(monkeypatch):
    """Every figure a plot function makes, kept open instead of written."""
    kept = []

    def keep(fig, path, suptitle=None):
        kept.append(fig)
        return path

    import layerscope.methods.layer_by_layer.plots as lbl
    import layerscope.methods.loops.plots as loops
    import layerscope.methods.patchscopes.plots as ps

    for module in (lbl, loops, ps):
        monkeypatch.setattr(module, "save_figure", keep)
    return kept


def test_clipped_errors_stay_in_the_unit_interval():
    mean, std = np.array([0.95, 0.5, 0.02]), np.array([0.1, 0.1, 0.05])
    lower, upper = clipped_errors(mean, std)
    assert np.allclose(mean - lower, [0.85, 0.4, 0.0]) and np.allclose(mean + upper, [1.0, 0.6, 0.07])


def test_probe_curve_has_chance_clipped_bars_and_integer_ticks(figures):
    from layerscope.methods.layer_by_layer.plots import probe_curve

    table = pd.DataFrame(
        {"depth": [0, 1, 2], "accuracy": [0.6, 0.97, 0.99], "accuracy_std": [0.1, 0.1, 0.2], "chance": 0.55}
    )
    probe_curve(table, "unused.png")
    (ax,) = figures[0].axes
    bars = [c for c in ax.collections if c.get_segments()]
    tops = [seg[:, 1].max() for c in bars for seg in c.get_segments()]
    bottoms = [seg[:, 1].min() for c in bars for seg in c.get_segments()]
    assert max(tops) <= 1.0 and min(bottoms) >= 0.0 and max(tops) == pytest.approx(1.0)
    assert any(line.get_label().startswith("chance (0.55)") for line in ax.lines)
    assert ax.get_ylim() == pytest.approx((-0.02, 1.02))
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_accuracy_heatmaps_use_one_fixed_scale(figures):
    from layerscope.methods.loops.plots import loop_heatmaps
    from layerscope.methods.patchscopes.plots import pair_heatmap

    pairs = pd.DataFrame({"source_layer": [0, 0, 3, 3], "target_layer": [0, 2, 0, 2], "accuracy": [0.1, 0.2, 0.0, 0.3]})
    pair_heatmap(pairs, "unused.png")
    injected = pd.DataFrame(
        {"loops": 2, "extract_iteration": [0, 0, 1, 1], "inject_iteration": [0, 1, 0, 1]}
        | {m: [0.1, 0.2, 0.3, 0.15] for m in ("probe_detect", "p_yes", "p_word")}
    )
    loop_heatmaps(injected, "unused.png")
    images = [image for fig in figures for ax in fig.axes for image in ax.images]
    assert len(images) == 4 and all(image.get_clim() == (0.0, 1.0) for image in images)


def test_layer_curves_have_integer_layer_ticks_and_a_unit_axis(figures):
    from layerscope.methods.patchscopes.plots import layer_curves

    table = pd.DataFrame(
        {"layer": [0, 1, 2, 3], "method": "logit_lens", "precision_at_1": [0.1, 0.2, 0.5, 1.0], "surprisal": 1.0}
    )
    layer_curves(table, "unused.png")
    precision = next(ax for ax in figures[0].axes if "precision" in ax.get_ylabel())
    assert precision.get_ylim() == pytest.approx((-0.02, 1.02))
    assert all(float(t).is_integer() for t in precision.get_xticks())
