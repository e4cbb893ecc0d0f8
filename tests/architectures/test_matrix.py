"""Every method on real architectures (torchvision and timm, random weights): each either works,
checked against an independent computation, or is refused in one line; the model is unchanged.

The networks come from tests/architectures/zoo.py; torchvision imports on this CPU machine through
the operator schemas that tests/conftest.py defines first (test setup only).
"""

from __future__ import annotations

import copy
from functools import cache

import pytest
import torch
import torch.nn.functional as F

import convscope as cs
from convscope.attribute.averaged import integrated_gradients
from convscope.attribute.cam import (PERTURBATIONS, WEIGHTINGS, class_activation_map, default_layer, grad_cam,
                                     guided_grad_cam, last_spatial_layer)
from convscope.attribute.core import attribute
from convscope.attribute.lrp import lrp
from convscope.attribute.noise import gradient_shap, smooth_grad
from convscope.attribute.occlusion import occlusion
from convscope.attribute.rise import rise
from convscope.attribute.rollout import attention_rollout
from convscope.attribute.surrogate import kernel_shap, lime
from convscope.core.maps import reading_of
from convscope.core.objectives import class_logit
from convscope.core.selfcheck import FLOOR, SLACK, relative_error
from convscope.core.summary import feature_maps
from convscope.inspect.fields import clipped_box, gradient_support
from convscope.data.datasets import open_dataset
from convscope.inspect.codes import penultimate_layer
from convscope.inspect.top_patches import top_activations
from convscope.optimize.adversarial import attack
from convscope.optimize.dream import dream
from convscope.optimize.fooling import fool
from convscope.optimize.invert import invert
from convscope.optimize.style import stylize
from convscope.optimize.visualize import visualize_channel, visualize_class
from tests.architectures.zoo import ARCHITECTURES, Arch, build_model
from tests.conftest import assert_unchanged, snapshot

pytest.importorskip("torchvision")
pytest.importorskip("timm")
NAMES = [arch.name for arch in ARCHITECTURES]
#: Networks whose attention is global over one token sequence (attention rollout's domain).
GLOBAL_ATTENTION = {"tv-vit", "timm-vit_tiny", "timm-deit_tiny_distilled"}
TARGET = 3


@cache
def model_of(name: str) -> cs.Model:
    return build_model(next(arch for arch in ARCHITECTURES if arch.name == name))


def arch_of(name: str) -> Arch:
    return next(arch for arch in ARCHITECTURES if arch.name == name)


def image(name: str, photo: str = "cat") -> torch.Tensor:
    return cs.sample_image(photo, size=arch_of(name).size)


def class_score(net: torch.nn.Module, model: cs.Model, x: torch.Tensor) -> torch.Tensor:
    """The target logit summed over the batch, the network's own dtype throughout."""
    mean = torch.tensor(model.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(model.std, dtype=x.dtype).view(1, -1, 1, 1)
    return net((x - mean) / std)[:, TARGET].sum()


def float64_gradient(model: cs.Model, x: torch.Tensor) -> torch.Tensor:
    """The class logit's input gradient of the original network in float64, by plain autograd at
    batch 2 (the image twice): at batch 1, PyTorch's CPU batch norm returns wrong input gradients to
    networks that make tokens of its output (see convscope.core.selfcheck), in float64 too."""
    net = copy.deepcopy(model.net).double().eval()
    pair = x.double().repeat(2, 1, 1, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(class_score(net, model, pair), pair)
    return grad[:1]


def float32_gradient(model: cs.Model, x: torch.Tensor) -> torch.Tensor:
    """The same in float32 on the original network: float32's own error (also at batch 2)."""
    pair = x.repeat(2, 1, 1, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(class_score(model.net, model, pair), pair)
    return grad[:1]


def directional_derivative(model: cs.Model, x: torch.Tensor, direction: torch.Tensor) -> tuple[float, float]:
    """The class logit's derivative along ``direction`` in float64 without any backward kernel, and
    how exact that is: by forward-mode differentiation, or by central differences (step 1e-6,
    tolerance 1e-5) where an op has no forward-mode formula (fused attention)."""
    net = copy.deepcopy(model.net).double().eval()
    score = lambda z: float(class_score(net, model, z))  # noqa: E731
    with torch.no_grad():
        try:
            return float(torch.func.jvp(lambda z: class_score(net, model, z), (x.double(),), (direction,))[1]), 1e-6
        except NotImplementedError:
            step = 1e-6
            return (score(x.double() + step * direction) - score(x.double() - step * direction)) / (2 * step), 1e-5


@cache
def float64_reference(name: str) -> tuple[torch.Tensor, float]:
    """The class logit's float64 input gradient, checked by forward mode, and how far it jumps when the
    pixels move by one float32 rounding (three draws): a ReLU network's gradient jumps where
    rounding flips a unit, so that is float32's own error too, whatever kernels run."""
    model, x = model_of(name), image(name)
    reference = float64_gradient(model, x)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    derivative, exactness = directional_derivative(model, x, direction)
    assert abs(float((reference * direction).sum()) - derivative) <= exactness * abs(derivative) + 1e-12
    eps = torch.finfo(torch.float32).eps
    shaken = [x.double() * (1 + eps * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed),
                                                  dtype=torch.float64)) for seed in range(3)]
    return reference, max(relative_error(float64_gradient(model, pixels), reference) for pixels in shaken)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "no-onednn"])
@pytest.mark.parametrize("name", NAMES)
def test_gradient_through_the_fast_paths_equals_float64_autograd(name, onednn):
    """Folding, channels-last and the rest may not drift further from the float64 gradient of the
    original network than the self-check allows: SLACK times float32's own error (plain float32
    autograd's, or the float64 gradient's jump under one float32 rounding of the pixels). Run
    with oneDNN on and off (other kernels: the nearest thing here to another CPU)."""
    model, x = model_of(name), image(name)
    reference, kink = float64_reference(name)
    with torch.backends.mkldnn.flags(enabled=onednn):
        own = max(relative_error(float32_gradient(model, x), reference), kink)
        got = relative_error(attribute(model, x, class_logit(TARGET)), reference)
    assert got <= max(FLOOR, SLACK * own), (got, own)


def grad_cam_by_hand(model: cs.Model, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Grad-CAM from a hook on the original network and plain autograd: ``(B, H, W)``."""
    captured = {}
    module = dict(model.net.named_modules())[layer.split("@")[0]]

    def keep(_, __, output):
        captured["acts"] = output
        return output.clone()  # the network's own in-place ops may follow the layer
    handle = module.register_forward_hook(keep)
    try:
        logits = model(x)
    finally:
        handle.remove()
    acts = captured["acts"]
    (grad,) = torch.autograd.grad(logits[0, TARGET], acts)
    reading = reading_of(acts.shape, x.shape[-2:])
    assert max(reading.grid) > 1
    maps, grads = reading.maps(acts.detach()), reading.maps(grad)
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * maps).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def assert_grad_cam_by_hand(model: cs.Model, x: torch.Tensor, layer: str | None) -> None:
    expected = grad_cam_by_hand(model, x, layer or default_layer(model, x, class_logit(TARGET)))
    got = grad_cam(model, x, class_logit(TARGET), layer)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-5 * float(expected.abs().max()) + 1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_grad_cam_on_the_default_layer_equals_its_closed_form(name):
    assert_grad_cam_by_hand(model_of(name), image(name), None)


@pytest.mark.parametrize(("name", "layer"), [("tv-vgg16", "features.28"), ("tv-alexnet", "features.10"),
                                             ("tv-resnet50", "layer4.2.bn3"), ("tv-mobilenet_v2", "features.18.1"),
                                             ("tv-inception_v3", "Mixed_6e.branch_pool.bn")])
def test_grad_cam_on_a_layer_that_the_next_op_changes_in_place(name, layer):
    """ReLU(inplace=True) after VGG's conv5_3, ``out += identity`` after ResNet's bn3, a functional
    in-place ReLU after Inception's pooled branch (Mixed_7c's was reported constant on one host; at
    80 px its map is 1x1, so the same block of Mixed_6e)."""
    assert_grad_cam_by_hand(model_of(name), image(name), layer)


@pytest.mark.parametrize("name", NAMES)
def test_exact_occlusion_equals_brute_force(name):
    model, x = model_of(name), image(name)
    exact = occlusion(model, x, TARGET, patch=16, stride=16).probabilities
    brute = occlusion(model, x, TARGET, patch=16, stride=16, mode="brute").probabilities
    torch.testing.assert_close(exact, brute, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_receptive_fields_equal_the_input_gradients_support(name):
    """Through channel shuffles, permutes to channels-last and back, layer norms over channels and
    linear layers on channels-last maps: a field is the support of the gradient, and one reported
    whole is whole (a squeeze-excitation gate, global attention, a recurrent layer over rows), except
    after windowed attention."""
    model, arch = model_of(name), arch_of(name)
    maps = feature_maps(model)
    for info in maps[::max(1, len(maps) // 3)][:3]:
        h, w = info.reading.grid
        unit = (h // 2, w // 2)
        support = gradient_support(model, info.name, unit)
        if not info.receptive_field.whole:
            box = clipped_box(info.receptive_field, unit, model.input_size)
            if overlapping_max_pools(model):  # only each window's maximum passes a gradient: the support
                assert box[:2] <= support[:2] and box[2:] >= support[2:], info.name  # may be smaller
            else:
                assert box == support, info.name
        elif not arch.windowed:
            assert support == pixels_read(name), info.name


@cache
def pixels_read(name: str) -> tuple[int, int, int, int]:
    """The bounding box of the pixels the network reads at all (its stem may leave the last rows
    out: 7-pixel patches of a 64-pixel image), from the gradient of a projection of its output."""
    model = model_of(name)
    net = copy.deepcopy(model.net).double().eval()
    x = torch.rand(3, 3, *model.input_size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    output = net(model.normalize(x))
    weights = torch.randn(output.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((output * weights).sum(), x)
    rows, cols = torch.nonzero(grad.abs().sum(dim=(0, 1)) > 0, as_tuple=True)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def overlapping_max_pools(model: cs.Model) -> bool:
    pools = [m for m in model.net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    return any(torch.nn.modules.utils._pair(p.kernel_size) > torch.nn.modules.utils._pair(p.stride or p.kernel_size)
               for p in pools)


@pytest.mark.parametrize("name", NAMES)
def test_codes_are_what_the_classifier_reads(name):
    """However the network reaches its classifier (a module's output, or functional calls such as
    DenseNet's relu and pooling: then the classifier's own input, ``NAME:input``)."""
    model, x = model_of(name), image(name)
    classifier = [m for m in model.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen = []
    handle = classifier.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    layer = penultimate_layer(model)
    with torch.no_grad():
        code = cs.capture(model, model.net, x, [layer])[layer]
    torch.testing.assert_close(code.reshape(seen[-1].shape), seen[-1])


def every_method(model: cs.Model, x: torch.Tensor, layer: str, folder) -> dict:
    """Each public method once, on few steps: name -> a function of no arguments."""
    objective = class_logit(TARGET)
    return {
        "activations": lambda: cs.activations(model, x, layer),
        "filters": lambda: cs.filters(model).grid(),
        "layers": lambda: cs.list_layers(model),
        "deconvnet": lambda: attribute(model, x, objective, rule="deconvnet"),
        "guided": lambda: attribute(model, x, objective, rule="guided"),
        **{cam: (lambda cam=cam: class_activation_map(model, x, objective, method=cam))
           for cam in [*WEIGHTINGS, *PERTURBATIONS] if cam != "gradcam"},
        "guided-gradcam": lambda: guided_grad_cam(model, x, objective),
        "vargrad": lambda: smooth_grad(model, x, objective, kind="vargrad", samples=2),
        "gradient-shap": lambda: gradient_shap(model, x, objective, samples=2),
        "integrated-gradients": lambda: integrated_gradients(model, x, objective, steps=4, max_steps=4),
        "rise": lambda: rise(model, x, objective, masks=4),
        "lrp": lambda: lrp(model, x, objective),
        "kernel-shap": lambda: kernel_shap(model, x, objective, segments=8, samples=6),
        "lime": lambda: lime(model, x, objective, segments=8, samples=6),
        "input-x-gradient": lambda: x * attribute(model, x, objective),
        "occlusion-fast": lambda: occlusion(model, x, TARGET, patch=16, stride=16, mode="fast"),
        "codes": lambda: cs.capture(model, model.net, x, [penultimate_layer(model)]),
        "top-activations": lambda: top_activations(model, "photos:2", folder, layer=layer, channels=[0, 1], k=2,
                                                   progress=False).patch(open_dataset("photos:2"), 1, 0),
        "attention-rollout": lambda: attention_rollout(model, x),
        "visualize-class": lambda: visualize_class(model, TARGET, steps=2),
        "visualize-channel": lambda: visualize_channel(model, layer, [0, 1], steps=2),
        "invert": lambda: invert(model, x, layer, steps=2),
        "dream": lambda: dream(model, x, layer, octaves=2, steps=1),
        "style": lambda: stylize(model, x, torch.rand_like(x), size=x.shape[-1], steps=1),
        "fgsm": lambda: attack(model, x, "fgsm"),
        "pgd": lambda: attack(model, x, "pgd", steps=2),
        "deepfool": lambda: attack(model, x, "deepfool", steps=1),
        "cw": lambda: attack(model, x, "cw", target=5, steps=2, searches=1),
        "fooling": lambda: fool(model, [TARGET], pattern=True, steps=1, max_steps=1),
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_method_works_or_is_refused_in_one_line_and_the_model_is_unchanged(name, tmp_path):
    model, x = model_of(name), image(name)
    before = snapshot(model.net)
    refused = {}
    for method, run in every_method(model, x, last_spatial_layer(model), tmp_path).items():
        try:
            run()
        except cs.ConvscopeError as error:
            refused[method] = str(error)
    assert all("\n" not in reason for reason in refused.values())
    rollout = {"attention-rollout"} if name in GLOBAL_ATTENTION else set()
    assert set(refused) - rollout <= {"guided", "deconvnet", "guided-gradcam", "attention-rollout"}, refused
    assert all("use" in reason for reason in refused.values())  # each says what to use instead
    assert not rollout & set(refused)
    assert_unchanged(before, model.net)
