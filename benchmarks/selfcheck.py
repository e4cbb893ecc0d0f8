"""What the fast paths' self-check costs, and the input gradients it protects, in one run.

Run: python -m benchmarks.selfcheck [--networks levit_128s,lambda_resnet26t,...]
Needs the test dependencies (torchvision and timm, installed --no-deps); torchvision imports on a
CPU-only machine through the operator schemas that tests/conftest.py defines (test setup only).

1. The cost: the first ``attribute`` call on a freshly loaded default model (which makes the
   verdicts: a float64 copy of the network, its forward and backward on two images, the float32
   original's and each tried stand-in's on one and two) against the mean of later calls.
2. The gradients: for each network (random weights, seeded; batch-norm statistics measured on the
   four sample photos; the classifier scaled to logits of standard deviation 3, as the issue that
   asked for the check set them up), the class logit's input gradient on the cat photo, relative
   error in the Euclidean norm against float64 autograd at batch 2 (itself checked against
   forward-mode differentiation along a random direction): plain autograd at batch 1 in float64
   and float32, float32 at batch 2 (float32's own error), and convscope's ``attribute``, with the
   verdicts behind it.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import tests.conftest  # noqa: F401 - torchvision's operator schemas on a CPU-only torch (test setup)
import convscope as cs
from convscope.attribute.core import attribute
from convscope.core import selfcheck
from convscope.core.objectives import class_logit
from convscope.models.external import IMAGENET_MEAN, IMAGENET_STD
from convscope.samples import SAMPLES

NETWORKS = {"levit_128s": ("timm", 224), "lambda_resnet26t": ("timm", 256), "mnasnet0_5": ("torchvision", 224),
            "vgg11_bn": ("torchvision", 224), "efficientvit_b0": ("timm", 224), "gernet_s": ("timm", 224),
            "densenet121": ("timm", 224), "sequencer2d_s": ("timm", 224)}
TARGET = 3


def check_cost(repeats: int) -> None:
    x = cs.sample_image("cat", size=224)
    model = cs.load_model("efficientnet_lite0", device="cpu")
    started = time.perf_counter()
    attribute(model, x, class_logit(285))
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeats):
        attribute(model, x, class_logit(285))
    later = (time.perf_counter() - started) / repeats
    print(f"default model, gradient of one 224x224 image: first call {first:.2f} s, later calls {later:.3f} s: "
          f"the self-check costs {first - later:.2f} s once per model, device and size")
    for verdict in selfcheck.verdicts(model):
        print("   ", verdict)


def network(name: str) -> cs.Model:
    library, size = NETWORKS[name]
    torch.manual_seed(0)
    if library == "timm":
        import timm
        net = timm.create_model(name, pretrained=False, num_classes=10)
    else:
        import torchvision
        net = torchvision.models.get_model(name, weights=None, num_classes=10)
    model = cs.Model(net, name, (size, size), IMAGENET_MEAN, IMAGENET_STD)
    photos = torch.cat([cs.sample_image(photo, size=size) for photo in SAMPLES])
    with torch.no_grad():
        for parameter in net.parameters():
            if parameter.dim() >= 2 and not parameter.any():
                parameter.normal_(0, 0.05)
        for norm in (m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
            norm.reset_running_stats()
            norm.momentum = None
        net.train()
        model(photos)
        net.eval()
        head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
        scale = 3 / model(photos).std()
        head.weight.mul_(scale)
        if head.bias is not None:
            head.bias.mul_(scale)
    return model


def gradients(name: str) -> None:
    model = network(name)
    x = cs.sample_image("cat", size=model.input_size)
    double = copy.deepcopy(model.net).double().eval()

    def score(net, z):
        mean = torch.tensor(model.mean, dtype=z.dtype).view(1, -1, 1, 1)
        std = torch.tensor(model.std, dtype=z.dtype).view(1, -1, 1, 1)
        return net((z - mean) / std)[:, TARGET].sum()

    def plain(net, z):
        z = z.detach().clone().requires_grad_(True)
        return torch.autograd.grad(score(net, z), z)[0][:1]

    reference = plain(double, x.double().repeat(2, 1, 1, 1))
    direction = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    try:
        with torch.no_grad():
            along = float(torch.func.jvp(lambda z: score(double, z), (x.double(),), (direction,))[1])
        checked = f"{abs(float((reference * direction).sum()) - along) / abs(along):.0e}"
    except NotImplementedError:
        checked = "n/a"
    errors = [plain(double, x.double()), plain(model.net, x), plain(model.net, x.repeat(2, 1, 1, 1)),
              attribute(model, x, class_logit(TARGET))]
    shown = " | ".join(f"{selfcheck.relative_error(value, reference):.1e}" for value in errors)
    print(f"| {name} | {checked} | {shown} |")
    for verdict in selfcheck.verdicts(model):
        print("   ", verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    check_cost(args.repeats)
    print("\n| network | reference vs forward mode | plain autograd, batch 1, float64 | float32 | float32 at batch 2 "
          "(own error) | convscope |")
    for name in args.networks.split(","):
        gradients(name)


if __name__ == "__main__":
    main()
