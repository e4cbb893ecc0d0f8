"""Legends: the colour bar shows its colormap from end to end, zero where the scale is signed, and
the pictures of the methods carry their scale, layer and class probability."""

import numpy as np
import torch
from matplotlib import colormaps

from convscope.attribute.saliency import saliency
from convscope.attribute.cam import default_layer
from convscope.core.legend import BAR, LINE, Panel, Scale, colorbar, row
from convscope.core.objectives import class_logit
from convscope.inspect.predictions import probabilities


def test_the_bar_runs_through_its_colormap_and_marks_zero():
    strip = colorbar(206, Scale(-1.0, 3.0, "bwr", "relevance"))
    bar = strip[:, 6, 6:200].T  # a row through the bar: columns 6 .. 6 + 194
    expected = torch.tensor(colormaps["bwr"](np.linspace(0, 1, 194))[:, :3]).float()
    zero = 6 + round(194 * 1 / 4)  # a quarter of the way from -1 to 3
    away = [i for i in range(194) if i != zero - 6]  # the zero tick crosses the bar
    assert torch.allclose(bar[away], expected[away], atol=1 / 255)
    assert strip[:, 0, zero].max() < 0.3  # the dark tick above the bar, at zero
    assert strip[:, 0, zero + 8].min() > 0.9 and strip[:, 0, zero - 8].min() > 0.9  # nothing beside it
    assert strip[:, 13:, :].min() < 0.5  # numbers are written under the bar


def test_a_row_labels_every_panel_and_bars_only_the_scaled_ones():
    image, tall = torch.rand(3, 40, 60), torch.rand(3, 80, 50)
    shown = row([Panel(image, "first"), Panel(tall, "second", Scale(0.0, 1.0))], padding=4)
    assert shown.shape == (3, 80 + BAR + LINE, 120 + 4 + 50)  # the first panel scaled to the common height
    assert torch.all(shown[:, 80:80 + BAR, :120] == 1)  # no bar under the unscaled panel
    assert shown[:, 80:80 + BAR, 124:].min() < 0.2  # a bar under the scaled one
    assert shown[:, 80 + BAR:, :120].min() < 0.5 and shown[:, 80 + BAR:, 124:].min() < 0.5  # both labels


def test_a_maps_picture_states_its_layer_scale_and_class_probability(lite0, cat):
    result = saliency(lite0, cat, 285, method="gradcam")
    shown = result.picture()
    layer = default_layer(lite0, cat, class_logit(285))
    probability = float(probabilities(lite0, cat)[0, 285])
    assert shown.numbers["layer"] == layer and f"gradcam at {layer} of " in shown.caption
    assert abs(shown.numbers["probability"] - probability) < 1e-5 and f"{probability:.1%}" in shown.caption
    assert shown.numbers["low"] == 0 and abs(shown.numbers["high"] - float(result.map[0].flatten().quantile(0.99))) < 1e-6
    assert shown.array.shape[0] == cat.shape[-2] + BAR + LINE
