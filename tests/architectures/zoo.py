"""The architecture matrix: torchvision and timm networks, random weights (seeded), small inputs.

Each entry builds the library's own model class (the code people run), at a size that keeps a
test at seconds: fewer classes, and for the transformers fewer blocks and narrower widths where
the constructor takes them (the same forward code as the full-size models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import convscope as cs
from convscope.models.external import IMAGENET_MEAN, IMAGENET_STD
from convscope.samples import SAMPLES


@dataclass(frozen=True)
class Arch:
    """One architecture of the matrix: ``build()`` returns the network; ``size`` is its test input side."""

    name: str
    build: Callable[[], torch.nn.Module]
    size: int = 64
    fixed: bool = False  # the network accepts only its own input size
    windowed: bool = False  # attention within windows (Swin): fields after it are reported whole, but are not


def _tv(name: str, **kwargs) -> Callable[[], torch.nn.Module]:
    def build():
        import torchvision
        return torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
    return build


def _timm(name: str, **kwargs) -> Callable[[], torch.nn.Module]:
    def build():
        import timm
        return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    return build


def _tv_vit() -> torch.nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer
    return VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=10)


def _tv_swin() -> torch.nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer
    return SwinTransformer(patch_size=[4, 4], embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                           window_size=[4, 4], num_classes=10)


ARCHITECTURES = [
    Arch("tv-alexnet", _tv("alexnet")),
    Arch("tv-vgg16", _tv("vgg16")),
    Arch("tv-resnet18", _tv("resnet18")),
    Arch("tv-resnet50", _tv("resnet50")),
    Arch("tv-densenet121", _tv("densenet121")),
    Arch("tv-googlenet", _tv("googlenet", aux_logits=False, init_weights=True)),
    Arch("tv-inception_v3", _tv("inception_v3", aux_logits=False, init_weights=True), size=80),
    Arch("tv-mobilenet_v2", _tv("mobilenet_v2")),
    Arch("tv-mobilenet_v3_small", _tv("mobilenet_v3_small")),
    Arch("tv-shufflenet_v2_x0_5", _tv("shufflenet_v2_x0_5")),
    Arch("tv-efficientnet_b0", _tv("efficientnet_b0")),
    Arch("tv-regnet_y_400mf", _tv("regnet_y_400mf")),
    Arch("tv-convnext_tiny", _tv("convnext_tiny")),
    Arch("tv-vit", _tv_vit, fixed=True),
    Arch("tv-swin", _tv_swin, windowed=True),
    Arch("timm-resnet26d", _timm("resnet26d")),
    Arch("timm-densenet121", _timm("densenet121")),
    Arch("timm-inception_v3", _timm("inception_v3"), size=80),
    Arch("timm-mobilenetv3_small_050", _timm("mobilenetv3_small_050")),
    Arch("timm-efficientnet_b0", _timm("efficientnet_b0")),
    Arch("timm-regnety_002", _timm("regnety_002")),
    Arch("timm-convnext_atto", _timm("convnext_atto")),
    Arch("timm-repvgg_a0", _timm("repvgg_a0")),
    Arch("timm-vit_tiny", _timm("vit_tiny_patch16_224", img_size=64, depth=2), fixed=True),
    Arch("timm-deit_tiny_distilled", _timm("deit_tiny_distilled_patch16_224", img_size=64, depth=2), fixed=True),
    Arch("timm-levit_128s", _timm("levit_128s", img_size=64), fixed=True),  # tokens after a batch norm
    Arch("timm-lambda_resnet26t", _timm("lambda_resnet26t")),
    Arch("timm-sequencer2d_s", _timm("sequencer2d_s", layers=(1, 1, 1, 1))),  # BiLSTMs over rows and columns
    Arch("timm-swin_tiny", _timm("swin_tiny_patch4_window7_224", img_size=64, window_size=4, depths=(1, 1, 1, 1),
                                 embed_dim=24), fixed=True, windowed=True),
]


def build_model(arch: Arch) -> cs.Model:
    """The architecture with seeded random weights in eval mode, as a convscope Model."""
    torch.manual_seed(0)
    model = cs.Model(arch.build(), arch.name, (arch.size, arch.size), IMAGENET_MEAN, IMAGENET_STD)
    _enliven(model)
    return model.to("cpu")


def _enliven(model: cs.Model) -> None:
    """Makes a randomly initialized network respond to its input like a trained one does, in scale.

    Library initializations leave some networks nearly constant (zero-initialized heads: every
    logit 0) or their activations vanishing or exploding through dozens of batch norms at unit
    statistics (logits of 1e-13 or 1e8): no test could then see a wrong map. Zero weights get
    small random values, batch norms random affine parameters, and their running statistics are
    measured on the four sample photos and their mirror images, as training on photos would leave
    them (statistics of noise hide the drifts that photos show); the classifier is scaled so that
    the logits spread like a trained one's (standard deviation 3)."""
    norms = [m for m in model.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    photos = torch.cat([cs.sample_image(name, size=model.input_size) for name in SAMPLES])
    photos = torch.cat([photos, photos.flip(-1)])
    with torch.no_grad():
        for parameter in model.net.parameters():
            if parameter.dim() >= 2 and not parameter.any():
                parameter.normal_(0, 0.05)
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the calibration batch
            if norm.affine:
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0, 0.2)
        model.net.train()
        model(photos)
        model.net.eval()
        head = [m for m in model.net.modules() if isinstance(m, torch.nn.Linear)][-1]
        scale = 3 / model(photos).std().clamp_min(1e-12)
        head.weight.mul_(scale)
        if head.bias is not None:
            head.bias.mul_(scale)
