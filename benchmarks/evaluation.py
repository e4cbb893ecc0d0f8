"""Issue 29's speed goals on the default model, against the peers on the same work, in one run:
Score-CAM and Ablation-CAM vs pytorch-grad-cam, LRP vs Zennit (and vs a plain forward+backward),
deletion + insertion curves vs Quantus, RISE vs a straightforward batched implementation.

Run: python benchmarks/evaluation.py [--images 32] [--repeats 3]
Needs: pip install --no-deps grad-cam ttach zennit==0.5.1 quantus==0.6.0 && pip install pandas cachetools
(the peers import torchvision, whose one wheel for torch 2.13 links CUDA: on a CPU build of torch the
two operator schemas it would register are defined first, as the tests do; convscope needs none of it.)

Each row gives seconds for the work on each side and convscope's speed-up; both sides get the same
images, maps, layer and class, and are timed in turn (best of --repeats; the curves, minutes each,
once).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from timing import interleaved
from torch import nn

import convscope as cs
from convscope.attribute.cam import class_activation_map
from convscope.attribute.lrp import lrp
from convscope.attribute.rise import rise, rise_masks
from convscope.core.hooks import frozen
from convscope.core.objectives import class_logit
from convscope.data.datasets import open_dataset
from convscope.data.loader import fitted_image
from convscope.evaluate.curves import deletion, insertion

TARGET = 967  # espresso
LAYER = "_swish@1"  # the 1280 x 7 x 7 head activation (pytorch-grad-cam takes the module's last call)


def allow_torchvision() -> None:
    if torch.version.cuda is None:
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        allow_torchvision.kept = library


class Normalized(nn.Module):
    """The default model as a plain module on [0, 1] pixels, for the peers."""

    def __init__(self, model: cs.Model) -> None:
        super().__init__()
        self.model, self.net = model, model.net

    def forward(self, x):
        return self.model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="cams,lrp,curves,rise", help="which rows to run (the curves take ~20 min)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    allow_torchvision()
    torch.manual_seed(0)
    model = cs.load_model(device="cpu")
    wrapped = Normalized(model).eval()
    x = cs.sample_image("coffee", size=model.input_size)
    rows = []
    rows += cams(model, wrapped, x, args.repeats) if "cams" in parts else []
    rows += lrp_rows(model, wrapped, x, args.repeats) if "lrp" in parts else []
    rows += curve_rows(model, wrapped, args.images, args.repeats) if "curves" in parts else []
    rows += rise_rows(model, wrapped, x, args.repeats) if "rise" in parts else []
    print(f"{'work':<62} {'convscope s':>11} {'peer s':>9} {'speed-up':>9}")
    for name, ours, theirs in rows:
        print(f"{name:<62} {ours:>11.3f} {theirs:>9.3f} {theirs / ours:>8.2f}x")


def cams(model, wrapped, x, repeats):
    """On torchvision's ResNet-18 (seeded random weights; 512 channels in layer4): pytorch-grad-cam's
    Ablation-CAM cannot run on the default model, which calls its activation module many times."""
    import torchvision
    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    resnet = cs.Model(net, "resnet18 (random weights)", (224, 224), model.mean, model.std, None, 3)
    peer_net = Normalized(resnet).eval()
    rows = []
    for name, peer in (("scorecam", ScoreCAM), ("ablationcam", AblationCAM)):
        with peer(model=peer_net, target_layers=[net.layer4]) as theirs:
            timed = interleaved({
                "ours": lambda name=name: class_activation_map(resnet, x, class_logit(TARGET), "layer4", method=name),
                "peer": lambda theirs=theirs: theirs(input_tensor=x, targets=[ClassifierOutputTarget(TARGET)])},
                max(1, repeats - 2))
        rows.append((f"{name}, ResNet-18 layer4, 512 channels (vs pytorch-grad-cam)", timed["ours"], timed["peer"]))
        if name == "scorecam":
            rows.append(("  the same, vs the bound: its 512 forwards alone on the fast path", timed["ours"],
                         forward_floor(resnet, x.expand(4, -1, -1, -1), 512)))
    return rows


def lrp_rows(model, wrapped, x, repeats):
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox
    low = model.normalize(torch.zeros(1, 3, 1, 1))
    high = model.normalize(torch.ones(1, 3, 1, 1))
    composite = EpsilonGammaBox(low=low, high=high, canonizers=[SequentialMergeBatchNorm()])
    net = model.net.eval()
    normalized = model.normalize(x)
    one_hot = torch.eye(1000)[[TARGET]]

    def zennit():
        with Gradient(model=net, composite=composite) as attributor:
            return attributor(normalized.clone(), lambda out: one_hot * out)

    def plain():
        with frozen(net):
            seen = normalized.clone().requires_grad_(True)
            return torch.autograd.grad(net(seen)[0, TARGET], seen)
    ours = lambda: lrp(model, x, class_logit(TARGET))  # noqa: E731
    epsilon = lambda: lrp(model, x, class_logit(TARGET), composite="epsilon")  # noqa: E731
    timed = interleaved({"ours": ours, "zennit": zennit, "plain": plain, "epsilon": epsilon}, repeats * 3)
    return [("LRP epsilon-gamma-box (vs Zennit 0.5.1)", timed["ours"], timed["zennit"]),
            ("LRP epsilon-gamma-box (vs a plain forward+backward)", timed["ours"], timed["plain"]),
            ("LRP epsilon everywhere (vs a plain forward+backward)", timed["epsilon"], timed["plain"])]


def curve_rows(model, wrapped, count, repeats):
    import quantus
    dataset = open_dataset(f"photos:{count}")
    x = torch.stack([fitted_image(dataset, i, model.input_size) for i in range(count)])
    classes = cs.probabilities(model, x).argmax(-1)
    methods = ("gradient", "gradcam", "input-x-gradient", "lrp")
    maps = {m: cs.saliency(model, x, classes, method=m).map for m in methods}
    # Quantus's step, in values of the (B, 3*H*W) image, must divide H*W: 1568 values (523 pixels) a
    # step is 96 steps, as ours with steps=96.
    features, steps = 1568, 96

    def ours():
        for m in methods:
            deletion(model, x, maps[m], classes, steps=steps)
            insertion(model, x, maps[m], classes, steps=steps)

    def theirs():  # Quantus has deletion (PixelFlipping); insertion is the same work in reverse: run it twice
        metric = quantus.PixelFlipping(features_in_step=features, perturb_baseline=0.0, disable_warnings=True,
                                       display_progressbar=False)
        for m in methods:
            for _ in range(2):
                metric(model=wrapped, x_batch=x.numpy(), y_batch=classes.numpy(), a_batch=maps[m][:, None].numpy(),
                       softmax=True, device="cpu")
    timed = once({"ours": ours, "peer": theirs})  # minutes each: one timed call, no warm-up round
    forwards = len(methods) * 2 * count * (steps + 1)
    floor = forward_floor(model, x, forwards)
    return [(f"deletion + insertion, {count} images x {len(methods)} methods, {steps} steps (vs Quantus 0.6.0)",
             timed["ours"], timed["peer"]),
            ("  the same, vs the bound: its forwards alone on the fast path", timed["ours"], floor)]


def once(fns: dict) -> dict[str, float]:
    """Seconds of one call of each function, in turn."""
    timed = {}
    for name, fn in fns.items():
        started = time.perf_counter()
        fn()
        timed[name] = time.perf_counter() - started
    return timed


def forward_floor(model, x, forwards: int) -> float:
    """Seconds for ``forwards`` images through the folded, channels-last network at the best batch (4)."""
    from convscope.core.fastpath import fast_model, in_fast_layout
    fast = fast_model(model, [], x[:4])
    batch = x[:4]

    def run():
        with frozen(fast.net), torch.inference_mode():
            in_fast_layout(fast, lambda z: fast(z), batch)
    per_batch = interleaved({"f": run}, 10)["f"]
    return per_batch * math.ceil(forwards / 4)


def rise_rows(model, wrapped, x, repeats):
    count = 1000

    def straightforward():
        masks = rise_masks(count, tuple(x.shape[-2:]))
        scores = []
        with torch.no_grad():
            for chunk in masks.split(64):
                scores.append(wrapped(x * chunk)[:, TARGET])
        values = torch.cat(scores)
        return torch.einsum("k,khw->hw", values - values.mean(), masks[:, 0]) / (count * 0.5)
    ours = lambda: rise(model, x, class_logit(TARGET), masks=count)  # noqa: E731
    same = float(torch.corrcoef(torch.stack([ours()[0].flatten(), straightforward().flatten()]))[0, 1])
    timed = interleaved({"ours": ours, "peer": straightforward}, max(1, repeats - 2))
    return [(f"RISE, {count} masks (vs plain batches of 64; maps correlate {same:.4f})", timed["ours"],
             timed["peer"])]


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
