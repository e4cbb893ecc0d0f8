"""Neural style transfer and fast (feed-forward) style transfer on the default model."""

import pytest
import torch
import torch.nn.functional as F

import convscope as cs
from convscope.core.objectives import gram, gram_match
from convscope.errors import ConvscopeError
from convscope.optimize.fast_style import (
    StyleNetwork,
    apply_style,
    load_style_network,
    save_style_network,
    train_style_network,
)
from convscope.optimize.style import StyleLoss, keep_colors, softmax_smoothing, stylize
from convscope.samples import STYLES, style_image, training_photos
from tests.conftest import assert_unchanged, snapshot


def test_gram_match_by_hand():
    a = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]])            # (1, 2, 1, 2)
    target = torch.tensor([[[2.0, 1.0], [1.0, 1.0]]])           # a made-up Gram matrix
    g = torch.tensor([[[2.5, 1.0], [1.0, 0.5]]])                # (1*1 + 2*2) / 2, (1*0 + 2*1) / 2, ...
    assert torch.allclose(gram(a), g)
    expected = -((g - target) ** 2).sum() / (target**2).sum()
    assert gram_match("x", target)({"x": a}).item() == pytest.approx(expected.item())
    assert gram_match("x", g)({"x": a}).item() == 0
    assert gram_match("x", 4 * g, lambda t: 2 * t)({"x": a}).item() == 0  # the transform comes first


def test_softmax_smoothing_sums_to_the_element_count():
    a = torch.randn(2, 4, 5, 6) * 10
    smooth = softmax_smoothing(a)
    assert torch.allclose(smooth.flatten(1).sum(1), torch.full((2,), 4 * 5 * 6.0))
    assert torch.allclose(softmax_smoothing(torch.zeros(1, 3, 7, 9)), torch.ones(1, 3, 7, 9))  # size-free scale


def test_keep_colors_takes_luminance_from_the_result_and_chroma_from_the_content():
    generator = torch.Generator().manual_seed(0)
    # result = content + (luminance difference) * (1, 1, 1): with both in [0.4, 0.6] nothing is clipped
    image, content = (torch.rand(1, 3, 8, 8, generator=generator) * 0.2 + 0.4 for _ in range(2))
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    mixed = torch.einsum("ij,bjhw->bihw", yiq, keep_colors(image, content))
    assert torch.allclose(mixed[:, 0], torch.einsum("j,bjhw->bhw", yiq[0], image), atol=1e-5)
    assert torch.allclose(mixed[:, 1:], torch.einsum("ij,bjhw->bihw", yiq[1:], content), atol=1e-5)


def test_style_transfer_matches_the_style_and_keeps_the_content(lite0):
    content, style = cs.sample_image("cat"), style_image("stained-glass", size=256)
    before = snapshot(lite0.net)
    result = stylize(lite0, content, style, size=256, steps=200)
    assert_unchanged(before, lite0.net)
    scaled = F.interpolate(content, size=result.images.shape[-2:], mode="bilinear", antialias=True)
    loss = StyleLoss(lite0, style, size=tuple(scaled.shape[-2:]))
    start, end = loss.measure(scaled, scaled), loss.measure(result.images, scaled)
    style_itself = loss.measure(F.interpolate(style, size=scaled.shape[-2:], mode="bilinear"), scaled)
    assert end["style"] <= 0.1 * start["style"], (start, end)
    assert end["content"] < style_itself["content"], (end, style_itself)


def test_style_transfer_is_deterministic_and_coarse_to_fine_keeps_the_size(lite0):
    content, style = cs.sample_image("coffee"), style_image("brushstrokes", size=128)
    first = stylize(lite0, content, style, size=96, steps=6, octaves=2, start="noise", seed=3)
    second = stylize(lite0, content, style, size=96, steps=6, octaves=2, start="noise", seed=3)
    assert first.images.shape == (1, 3, 64, 96)
    assert torch.equal(first.images, second.images)


def test_fast_style_network_learns_the_style_for_unseen_photos(lite0, tmp_path):
    style = style_image("stained-glass", size=256)
    before = snapshot(lite0.net)
    network = train_style_network(lite0, style, training_photos(size=256), size=96, steps=150, style_weight=2.0)
    assert_unchanged(before, lite0.net)
    cat = cs.sample_image("cat", size=256)  # not among the training photos
    styled = apply_style(network, cat)
    loss = StyleLoss(lite0, style)
    assert loss.measure(styled, cat)["style"] <= 0.5 * loss.measure(cat, cat)["style"]
    path = save_style_network(network, tmp_path / "net.pt")
    assert torch.equal(apply_style(load_style_network(path), cat), styled)


def test_style_network_keeps_any_size_and_range():
    network = StyleNetwork(width=4, residuals=1).eval()
    out = apply_style(network, torch.rand(2, 3, 37, 50))
    assert out.shape == (2, 3, 37, 50) and 0 <= out.min() and out.max() <= 1


def test_a_file_that_is_not_a_style_network_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a network")
    with pytest.raises(ConvscopeError, match="not a style network"):
        load_style_network(bad)
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConvscopeError, match="not a style network"):
        load_style_network(tmp_path / "other.pt")


@pytest.mark.parametrize("name", STYLES)
def test_style_images_are_colorful_textures(name):
    image = style_image(name, size=64)
    assert image.shape == (1, 3, 64, 64) and 0 <= image.min() and image.max() <= 1
    assert image.std((2, 3)).min() > 0.05  # every channel varies


def test_vgg_layout_gets_the_papers_layers_and_stylizes():
    from torch import nn

    from convscope.optimize.style import default_layers
    from tests.helpers import vgg16_like

    class VGG(nn.Module):  # torchvision's layout: features.N
        def __init__(self):
            super().__init__()
            self.features = vgg16_like()

        def forward(self, x):
            return self.features(x).mean((2, 3))

    torch.manual_seed(0)
    vgg = VGG().eval()
    layers = default_layers(vgg)
    assert layers.content == "features.22" and list(layers.style) == [f"features.{k}" for k in (1, 6, 11, 20, 29)]
    content, style = cs.sample_image("cat", size=48), style_image("brushstrokes", size=48)
    loss = StyleLoss(vgg, style, size=(48, 48))
    result = stylize(vgg, content, style, size=48, steps=30)
    assert loss.measure(result.images, content)["style"] < loss.measure(content, content)["style"]
