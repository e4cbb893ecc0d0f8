"""The task matrix: models of every task, from torchvision, timm, Hugging Face (small configs) and
Ultralytics, random-initialized and offline, through a method of each family. Each method works,
checked (the plain gradient against float64 autograd of the target written out by hand; every map
finite and not constant), or is refused in one line; the model is unchanged afterwards.

Faster R-CNN is not a row: its RoI Align runs in pure Python without torchvision's compiled
operators, and the row took 8 minutes here; its box's Grad-CAM is checked against pytorch-grad-cam
in ``test_detection.py``.

``scripts/task_matrix.py`` prints the same calls as a Markdown table."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.attribute.occlusion import occlusion
from convscope.attribute.rise import rise
from convscope.attribute.targets import objective_for
from convscope.core.objectives import INPUT, OUTPUT
from convscope.core.task_objectives import similarity
from tests.conftest import assert_unchanged, snapshot
from tests.helpers import calibrated, small_detr
from tests.torchvision_cpu import torchvision_detection

#: The methods, one or two of each family, with settings that keep the matrix short.
METHODS = ("gradient", "guided", "gradcam", "layercam", "lrp", "integrated-gradients", "rise", "occlusion")
#: Grad-CAM rectifies a weighted sum of channels, which on random weights may be negative everywhere: a
#: zero map, and a right one (Grad-CAM++ and LayerCAM, which weigh positive gradients, are not zero there).
MAY_BE_ZERO = ("gradcam",)


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def _hf(name: str, config: str, **options) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    return _seeded(lambda: getattr(transformers, name)(getattr(transformers, config)(**options)))


def _timm(outputs: int) -> nn.Module:
    timm = pytest.importorskip("timm")
    return _seeded(lambda: timm.create_model("resnet18", num_classes=outputs))


def _fcn_resnet18() -> nn.Module:
    """torchvision's FCN (its IntermediateLayerGetter and FCNHead, returning ``{"out": ...}``) on a
    ResNet-18: the same code as ``fcn_resnet50``, a quarter of the arithmetic (that row took 73 s)."""
    from torchvision.models import resnet18
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    def build():
        backbone = IntermediateLayerGetter(resnet18(weights=None), return_layers={"layer4": "out"})
        return FCN(backbone, FCNHead(512, 4))
    return _seeded(build)


def _segmenter(name: str) -> nn.Module:
    from torchvision.models import segmentation
    return _seeded(lambda: getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=4,
                                                        **({"aux_loss": False} if name != "lraspp_mobilenet_v3_large"
                                                           else {})))


def _ssdlite() -> nn.Module:
    detection = torchvision_detection()
    net = _seeded(lambda: detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3,
                                                                   detections_per_img=20))
    net.transform.fixed_size = (96, 96)
    return net


def _fcos() -> nn.Module:
    """FCOS on a ResNet-18 feature pyramid (the adapter knows the class, whatever its backbone), with
    its classification prior at 0.5 so that random weights find boxes."""
    detection = torchvision_detection()
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    def build():
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                       returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
        return detection.FCOS(backbone, num_classes=3, min_size=64, max_size=64, topk_candidates=50,
                              detections_per_img=20)
    net = _seeded(build)
    with torch.no_grad():
        net.head.classification_head.cls_logits.bias.zero_()
    return net


def _yolo() -> nn.Module:
    os.environ.setdefault("YOLO_CONFIG_DIR", "/tmp/convscope-tests-ultralytics")
    torchvision_detection()
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    net = _seeded(lambda: tasks.DetectionModel("yolov8n.yaml", nc=3, verbose=False))
    with torch.no_grad():
        for branch in net.model[-1].cv3:
            branch[-1].bias.zero_()
    return net


def _detr() -> nn.Module:
    return small_detr(pytest.importorskip("transformers"))


#: name -> (task, builder of the Model, the target: a --target string, or None for the prediction).
MODELS: dict[str, tuple[str, Callable[[], cs.Model], str | None]] = {
    "hf ViT": ("classification", lambda: calibrated(_hf(
        "ViTForImageClassification", "ViTConfig", image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=5), 32), None),
    "hf ConvNeXt": ("classification", lambda: calibrated(_hf(
        "ConvNextForImageClassification", "ConvNextConfig", num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
        num_labels=5), 32), None),
    "hf SegFormer": ("segmentation", lambda: calibrated(_hf(
        "SegformerForSemanticSegmentation", "SegformerConfig", num_labels=4, hidden_sizes=[8, 16, 16, 16],
        depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=16), 64), None),
    "hf CLIP vision": ("embedding", lambda: calibrated(_hf(
        "CLIPVisionModelWithProjection", "CLIPVisionConfig", image_size=32, patch_size=8, hidden_size=32,
        intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=16), 32, task="embedding"),
        "similar"),
    "timm ResNet-18, 0 classes": ("embedding", lambda: calibrated(_timm(0), 64, task="embedding"), "similar"),
    "timm ResNet-18, 1 output": ("regression", lambda: calibrated(_timm(1), 64), None),
    "timm ResNet-18, 20 labels": ("multi-label", lambda: calibrated(_timm(20), 64, task="multi-label"),
                                  "sigmoid:3"),
    "tv LR-ASPP": ("segmentation", lambda: calibrated(_segmenter("lraspp_mobilenet_v3_large"), 64), None),
    "tv DeepLabV3 MobileNetV3": ("segmentation", lambda: calibrated(
        _segmenter("deeplabv3_mobilenet_v3_large"), 64), None),
    "tv FCN ResNet-18": ("segmentation", lambda: calibrated(_fcn_resnet18(), 64), None),
    "tv SSDlite": ("detection", lambda: calibrated(_ssdlite(), 96), None),
    "tv FCOS ResNet-18": ("detection", lambda: calibrated(_fcos(), 64), None),
    "Ultralytics YOLOv8n": ("detection", lambda: calibrated(_yolo(), 96), None),
    "hf DETR": ("detection", lambda: calibrated(_detr(), 96), None),
}


def image(model: cs.Model, seed: int = 0) -> torch.Tensor:
    """A sample photo at the model's input size; ``seed`` picks another one."""
    return cs.sample_image(("astronaut", "coffee")[seed], size=model.input_size)


def target_of(model: cs.Model, x: torch.Tensor, target: str | None):
    """The matrix's target for ``x``: a string of the grammar, the prediction, or for an embedding the
    similarity to another photo's output."""
    if target != "similar":
        return target
    with torch.no_grad():
        return similarity(model(image(model, 1)))


def every_method(model: cs.Model, x: torch.Tensor, target) -> dict[str, Callable[[], torch.Tensor]]:
    """``{method: () -> (1, H, W) map}``, each as a user calls it, with short settings."""
    def perturbing(run):
        return lambda: run(objective_for(model, x, target, perturbation=True))
    return {
        **{method: (lambda method=method: cs.saliency(model, x, target, method=method).map)
           for method in ("gradient", "guided", "gradcam", "layercam", "lrp")},
        "integrated-gradients": lambda: cs.saliency(model, x, target, method="integrated-gradients").map,
        "rise": perturbing(lambda objective: rise(model, x, objective, masks=48)),
        "occlusion": lambda: occlusion(model, x, target, patch=16, stride=16).attribution,
    }


def autograd_map(model: cs.Model, x: torch.Tensor, objective) -> torch.Tensor:
    """The plain gradient map of an objective, written out: autograd of it on the network's output,
    the largest absolute value over the channels (in the dtype of ``model`` and ``x``)."""
    pixels = x.clone().requires_grad_(True)
    with cs.frozen(model.net):
        score = objective({OUTPUT: model(pixels), INPUT: pixels}).sum()
        (gradient,) = torch.autograd.grad(score, pixels)
    return gradient.abs().amax(1).float()


def float64_reference(model: cs.Model, x: torch.Tensor, target) -> tuple[torch.Tensor, float]:
    """The gradient map in float64, and the tolerance float32's own error gives it here: four times
    the larger of plain float32 autograd's distance from it and its own jump when the pixels move by
    one float32 rounding (a ReLU network's gradient is not continuous), relative, in the norm."""
    objective = objective_for(model, x, target)
    double = dataclasses.replace(model, net=copy.deepcopy(model.net).double())
    reference = autograd_map(double, x.double(), objective)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shaken = autograd_map(double, x.double() * (1 + torch.finfo(torch.float32).eps * noise), objective)
    plain = autograd_map(model, x, objective)
    jumps = [float((other - reference).norm() / reference.norm()) for other in (plain, shaken)]
    return reference, max(1e-5, 4 * max(jumps))


def outcomes(name: str) -> tuple[dict[str, str], cs.Model]:
    """``{method: "ok" or the refusal}`` on model ``name``, each map checked."""
    task, build, wanted = MODELS[name]
    model = build()
    x = image(model)
    target = target_of(model, x, wanted)
    assert model.task_of(model(x)) == task  # inferred, or as set
    found = {}
    for method, run in every_method(model, x, target).items():
        try:
            shown = run().detach().float()
        except cs.ConvscopeError as error:
            found[method] = str(error)
            continue
        assert shown.shape == (1, *x.shape[-2:]) and bool(torch.isfinite(shown).all()), method
        assert float(shown.max() - shown.min()) > 0 or method in MAY_BE_ZERO, f"{method}: a constant map"
        if method == "gradient":
            expected, tolerance = float64_reference(model, x, target)
            error = float((shown - expected).norm() / expected.norm())
            assert error <= tolerance, f"the gradient is {error:.1e} from float64 autograd (tolerance {tolerance:.1e})"
        found[method] = "ok"
    return found, model


@pytest.mark.parametrize("name", list(MODELS))
def test_every_task_model_through_every_family_works_or_is_refused_in_one_line(name):
    task, build, _ = MODELS[name]
    found, model = outcomes(name)
    assert all("\n" not in outcome for outcome in found.values())
    assert {"gradient", "gradcam", "layercam", "integrated-gradients", "rise", "occlusion"} <= {
        method for method, outcome in found.items() if outcome == "ok"}, found
    refused = {method: outcome for method, outcome in found.items() if outcome != "ok"}
    assert all("use" in reason or "instead" in reason for reason in refused.values()), refused


def test_the_matrix_leaves_every_model_unchanged():
    for name in ("tv LR-ASPP", "tv SSDlite"):  # (Hugging Face models keep hooks of their own: not checkable here)
        _, build, wanted = MODELS[name]
        model = build()
        before = snapshot(model.net)
        x = image(model)
        for run in every_method(model, x, target_of(model, x, wanted)).values():
            try:
                run()
            except cs.ConvscopeError:
                pass
        assert_unchanged(before, model.net)
