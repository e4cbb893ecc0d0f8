"""Any task: outputs of any shape, and targets for segmentation, regression, multi-label and
embeddings, each checked against an independent computation (plain autograd of a hand-written
scalar, pytorch-grad-cam's segmentation target, a network whose answer is known)."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convscope as cs
from convscope.attribute.averaged import integrated_gradients
from convscope.attribute.occlusion import occlusion
from convscope.attribute.targets import objective_for
from convscope.core.objectives import OUTPUT
from convscope.core.task_objectives import region, similarity
from convscope.models.outputs import select_output
from tests.conftest import assert_unchanged, snapshot


class _Segmenter(nn.Module):
    """A small segmenter returning torchvision's dict: ``out`` at the input size, ``aux`` coarse."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU())
            self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        coarse = self.head(self.body(x))
        return OrderedDict(out=F.interpolate(coarse, size=x.shape[-2:], mode="bilinear"), aux=coarse)


class _Vector(nn.Module):
    """conv, global pool, linear to ``outputs`` values: a regression, multi-label or embedding head."""

    def __init__(self, outputs: int, *, wrap=None) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(1)
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.fc = nn.Linear(6, outputs)
        self.wrap = wrap

    def forward(self, x):
        out = self.fc(torch.tanh(self.conv(x)).mean((2, 3)))
        return out if self.wrap is None else self.wrap(out)


def _images(count: int = 2, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _autograd(net: nn.Module, x: torch.Tensor, scalar) -> torch.Tensor:
    """The input gradient of ``scalar(raw output)`` summed over the batch, by plain autograd."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(scalar(net(x)).sum(), x)
    return grad


@pytest.mark.parametrize("raw, expected", [
    (lambda t: t, "tensor"),
    (lambda t: OrderedDict(out=t, aux=t * 0), "out"),
    (lambda t: (t, [t * 0]), "first"),
    (lambda t: {"pred_boxes": t * 0 + 1, "logits": t}, "logits"),  # a Hugging Face ModelOutput is a dict
])
def test_the_output_tensor_is_found_in_any_container(raw, expected):
    t = torch.arange(6.0).view(2, 3)
    assert torch.equal(select_output(raw(t)), t)


def test_a_named_output_and_bad_names_get_one_line():
    t = torch.arange(6.0).view(2, 3)
    assert torch.equal(select_output({"a": t * 2, "b": t}, "b"), t)
    assert torch.equal(select_output((t * 2, t), 1), t)
    assert torch.equal(select_output((t * 2, t), lambda out: out[1]), t)
    with pytest.raises(cs.ConvscopeError, match=r"output key 'c' is not there: .* keys a, b$"):
        select_output({"a": t, "b": t}, "c")
    with pytest.raises(cs.ConvscopeError, match="one dict per image"):
        select_output([{"boxes": t}, {"boxes": t}])


def test_segmentation_region_gradient_equals_autograd_of_the_masked_mean():
    net = _Segmenter()
    model = cs.Model(net, input_size=(24, 24))
    x = _images()
    before = snapshot(net)
    objective = objective_for(model, x)  # the largest predicted class over its predicted pixels
    with torch.no_grad():
        out = net(x)["out"]
    predicted = out.argmax(1)
    areas = F.one_hot(predicted.flatten(1), 4).sum(1)
    areas[:, 0] = -1
    classes = areas.argmax(1)
    masks = (predicted == classes.view(-1, 1, 1)).float()

    def masked_mean(raw):
        planes = raw["out"][torch.arange(len(x)), classes]
        return (planes * masks).flatten(1).sum(1) / masks.flatten(1).sum(1)
    expected = _autograd(net, x, masked_mean)
    got = cs.saliency(model, x, objective, method="gradient").map
    assert torch.allclose(got, expected.abs().amax(1), rtol=1e-4, atol=1e-7)
    assert_unchanged(before, net)


def test_region_on_a_network_whose_answer_is_known():
    """A single 3x3 convolution: the region of one output pixel reads the 3x3 window around it,
    with the kernel as its gradient."""
    conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(3)))
    model = cs.Model(conv, input_size=(9, 9))
    mask = torch.zeros(9, 9)
    mask[4, 5] = 1
    x = _images(1, 9)
    x = x.clone().requires_grad_(True)
    from convscope.attribute.core import attribute
    got = attribute(model, x.detach(), region(1, mask))[0]
    expected = torch.zeros(3, 9, 9)
    expected[:, 3:6, 4:7] = conv.weight[1].detach()
    assert torch.allclose(got, expected, atol=1e-6)


def test_grad_cam_of_a_region_equals_pytorch_grad_cam_semantic_segmentation_target():
    pytest.importorskip("torchvision")
    cam_lib = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    model = cs.Model(net, input_size=(96, 96))
    x = cs.sample_image("coffee", size=96)
    objective = objective_for(model, x)
    with torch.no_grad():
        predicted = net(model.normalize(x))["out"].argmax(1)[0]
    index = int(objective.name.split()[1])
    mask = (predicted == index).float()
    layer = "backbone.16"
    got = cs.saliency(model, x, objective, method="gradcam", layer=layer).map[0]

    class Wrapped(nn.Module):  # the library's documented wrapping: a tensor, not a dict
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, z):
            return self.net(z)["out"]
    wrapped = Wrapped()
    with cam_lib.GradCAM(model=wrapped, target_layers=[dict(net.named_modules())[layer]]) as cam:
        reference = torch.from_numpy(cam(model.normalize(x), targets=[SemanticSegmentationTarget(index, mask.numpy())]
                                         ))[0]
    normalize = lambda m: (m - m.min()) / (m.max() - m.min())  # noqa: E731 - the library scales to [0, 1]
    assert float((normalize(got) - reference).abs().max()) < 1e-3


def test_regression_up_and_down_and_one_line_refusals():
    net = _Vector(1)
    model = cs.Model(net, input_size=(24, 24))
    x = _images()
    expected = _autograd(net, x, lambda out: out[:, 0])
    from convscope.attribute.core import attribute
    up = attribute(model, x, objective_for(model, x))
    down = attribute(model, x, objective_for(model, x, "down"))
    assert torch.allclose(up, expected, rtol=1e-4, atol=1e-8) and torch.allclose(down, -expected, rtol=1e-4, atol=1e-8)
    with pytest.raises(cs.ConvscopeError, match=r"a regression model .*: explain its output value"):
        cs.classify(model, x)
    with pytest.raises(cs.ConvscopeError, match="a region target needs a segmentation output"):
        objective_for(model, x, "region:0")
    with pytest.raises(cs.ConvscopeError, match="up:INDEX needs a number"):
        objective_for(model, x, "up:x")


def test_multi_label_uses_each_class_sigmoid():
    net = _Vector(5)
    model = cs.Model(net, input_size=(24, 24), task="multi-label")
    x = _images()
    probs = cs.probabilities(model, x)
    with torch.no_grad():
        assert torch.allclose(probs, net(x).sigmoid()) and not torch.allclose(probs.sum(1), torch.ones(2))
    from convscope.attribute.core import attribute
    got = attribute(model, x, objective_for(model, x, "sigmoid:3"))
    assert torch.allclose(got, _autograd(net, x, lambda out: out[:, 3].sigmoid()), rtol=1e-4, atol=1e-9)


def test_embedding_similarity_to_a_reference_and_its_batching():
    net = _Vector(8, wrap=lambda out: {"image_embeds": out})
    model = cs.Model(net, input_size=(24, 24), task="embedding")
    x, reference = _images(), _images(1, seed=5)
    with torch.no_grad():
        vector = net(reference)["image_embeds"][0]
    objective = similarity(vector)
    with torch.no_grad():
        assert torch.allclose(similarity(net(x)["image_embeds"])({OUTPUT: net(x)["image_embeds"]}), torch.ones(2))
    from convscope.attribute.core import attribute
    expected = _autograd(net, x, lambda out: F.cosine_similarity(out["image_embeds"], vector.view(1, -1)))
    assert torch.allclose(attribute(model, x, objective), expected, rtol=1e-4, atol=1e-9)
    per_image = similarity(torch.stack([vector, -vector]))  # one reference per image: the second is opposite
    together = attribute(model, x, per_image)
    assert torch.allclose(together[1], -expected[1], rtol=1e-4, atol=1e-9)
    with pytest.raises(cs.ConvscopeError, match="is an embedding model: explain the similarity to a reference"):
        objective_for(model, x)
    with pytest.raises(cs.ConvscopeError, match="the reference has 3 values, the model's output 8"):
        attribute(model, x, similarity(torch.ones(3)))


def test_region_targets_batched_equal_one_at_a_time_and_bad_regions_get_one_line():
    model = cs.Model(_Segmenter(), input_size=(24, 24))
    x = _images(3)
    masks = torch.zeros(3, 24, 24)
    masks[0, :8], masks[1, 8:16], masks[2, :, 4:9] = 1, 1, 1
    objective = region(torch.tensor([1, 2, 3]), masks)
    from convscope.attribute.core import attribute
    together = attribute(model, x, objective)
    apart = torch.cat([attribute(model, x[i:i + 1], region(c, masks[i])) for i, c in enumerate((1, 2, 3))])
    assert torch.allclose(together, apart, rtol=1e-5, atol=1e-9)
    from convscope.attribute.rise import rise  # perturbed copies, image-major: each copy its image's target
    masked = rise(model, x, objective, masks=32)
    alone = torch.cat([rise(model, x[i:i + 1], region(c, masks[i]), masks=32) for i, c in enumerate((1, 2, 3))])
    assert torch.allclose(masked, alone, rtol=1e-4, atol=1e-7)
    with pytest.raises(cs.ConvscopeError, match="the mask is 5x5; accepted: the image's size 24x24"):
        from convscope.attribute.targets import predicted_region
        predicted_region(model, x, 1, mask=torch.ones(5, 5))
    with pytest.raises(cs.ConvscopeError, match="class 9 is out of range; the model segments 4 classes"):
        objective_for(model, x, "region:9")


def test_ablation_cam_of_a_region_on_a_layer_of_few_channels_has_a_known_answer():
    """Ablating head channel k zeroes class k's logits only: for class c's region the weight of channel
    c is 1 and every other is 0, so the map is the head's channel c, rectified (4 channels: fewer
    than one chunk of copies, which used to leave an empty chunk)."""
    net = _Segmenter()
    model = cs.Model(net, input_size=(24, 24))
    x = _images()
    masks = torch.ones(24, 24)
    got = cs.saliency(model, x, region(2, masks), method="ablationcam", layer="head").map
    with torch.no_grad():
        coarse = net(x)["aux"][:, 2]
    expected = F.interpolate(torch.relu(coarse)[:, None], size=(24, 24), mode="bilinear")[:, 0]
    assert torch.allclose(got / got.amax((1, 2), keepdim=True), expected / expected.amax((1, 2), keepdim=True),
                          atol=1e-4)


@pytest.mark.parametrize("mode", ["exact", "brute"])
def test_occlusion_of_a_region_equals_the_masked_mean_computed_at_every_position(mode):
    net = _Segmenter()
    model = cs.Model(net, input_size=(24, 24))
    x = _images(1)
    objective = objective_for(model, x)  # the largest predicted class over its predicted pixels
    result = occlusion(model, x, patch=8, stride=8, fill="zero", mode=mode)
    expected = torch.zeros(3, 3)
    with torch.no_grad():
        for row in range(3):
            for col in range(3):
                covered = x.clone()
                covered[..., 8 * row:8 * row + 8, 8 * col:8 * col + 8] = 0
                expected[row, col] = objective({OUTPUT: net(covered)["out"]})[0]
        unoccluded = objective({OUTPUT: net(x)["out"]})[0]
    assert torch.allclose(result.probabilities[0], expected, rtol=1e-4, atol=1e-6)
    assert torch.allclose(result.baseline[0], unoccluded, rtol=1e-5)
    assert result.watched == objective.name and "over its predicted pixels" in result.watched


def test_occlusion_refuses_a_target_inside_the_network_in_one_line():
    model = cs.Model(_Segmenter(), input_size=(24, 24))
    from convscope.core.objectives import channel
    with pytest.raises(cs.ConvscopeError, match=r"occlusion watches the network's output; .* reads layer body.1"):
        occlusion(model, _images(1), channel("body.1", 0), patch=8, stride=8)


def test_integrated_gradients_of_a_region_equal_captums_with_a_hand_wrapped_forward():
    """Captum reads one scalar per image: the region's masked mean logit, wrapped by hand around the
    network (what users have to write there); convscope takes the region target."""
    attr = pytest.importorskip("captum.attr")
    net = _Segmenter()
    model = cs.Model(net, input_size=(24, 24))
    x = _images()
    masks = torch.zeros(len(x), *net(x)["out"].shape[-2:])
    masks[:, 3:9, 2:7] = 1  # a region the user gives (region:2@MASK.png)

    double = copy.deepcopy(net).double()

    def masked_mean(z):  # Captum stacks the path's points batch after batch; in float64, as the reference
        tiled = masks.double().repeat(len(z) // len(masks), 1, 1)
        return (double(z)["out"][:, 2] * tiled).flatten(1).sum(1) / tiled.flatten(1).sum(1)
    # Captum's trapezoid weighs 16 points on [0, 1] by 1/16 (halved at the ends), so its weights sum
    # to 15/16, not 1: rescaled, it is the trapezoid rule convscope uses
    expected = attr.IntegratedGradients(masked_mean).attribute(x.double(), baselines=torch.zeros_like(x.double()),
                                                              n_steps=16, method="riemann_trapezoid") * 16 / 15
    got = integrated_gradients(model, x, region(2, masks), steps=16, max_steps=16)
    assert float((got.double() - expected).norm() / expected.norm()) < 1e-5  # float32's error here: about 1e-7
