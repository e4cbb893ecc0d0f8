"""Attribution speed on the default model, against Captum and pytorch-grad-cam, in one run.

Run: python benchmarks/attribution.py [--repeats 30]
Needs: pip install captum && pip install --no-deps grad-cam ttach
(pytorch-grad-cam hard-imports torchvision, which has no CPU build here: a stand-in module
with the three names it imports is put in sys.modules below; the CAM code path does not use them.)

Prints seconds per 224x224 image and the speed-up of convscope over each peer on the same work;
"vs floor" divides by the faster of the two plain forward+backward passes (frozen model). convscope
runs a copy of the network with its batch norms folded into the convolutions (the third floor row;
see convscope.core.folding), so its gradient methods can beat the plain floor. The
gradient methods and their floors are timed in turn (best of --repeats each, each timed call
right after an untimed one of the same method), as are the
Integrated Gradients and occlusion runs (best of --repeats/10), so a slow spell of the machine
hits all alike.
"""

from __future__ import annotations

import argparse
import sys
import types

import torch
from timing import interleaved

import convscope as cs
from convscope.attribute.averaged import integrated_gradients
from convscope.attribute.cam import grad_cam
from convscope.attribute.core import attribute
from convscope.attribute.occlusion import DRILL, fast_on_cpu, occlusion
from convscope.core.fastpath import fast_model
from convscope.core.hooks import frozen
from convscope.core.layout import channels_last
from convscope.core.metrics import ssim
from convscope.core.objectives import class_logit

TARGET = 285  # Egyptian cat


def stub_torchvision() -> None:
    """Just enough torchvision for pytorch-grad-cam's imports."""
    vision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    transforms.Compose = transforms.Normalize = transforms.ToTensor = object
    functional.resize = None
    vision.transforms, transforms.functional = transforms, functional
    for name, module in {"torchvision": vision, "torchvision.transforms": transforms,
                         "torchvision.transforms.functional": functional}.items():
        sys.modules.setdefault(name, module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        IntegratedGradients,
        Occlusion,
        Saliency,
    )

    model = cs.load_model(device=args.device)
    x = cs.sample_image("cat", size=224).to(model.device)
    net = model.net
    wrapped = torch.nn.Sequential(_Normalize(model), net).eval()
    leaf = lambda: x.clone().requires_grad_(True)  # noqa: E731
    rows = []

    def floor(layout, run=model):
        with frozen(run.net), channels_last(run.net, layout == torch.channels_last):
            z = x.contiguous(memory_format=layout).requires_grad_(True)
            torch.autograd.grad(run(z)[0, TARGET], z)
    folded = fast_model(model, [], x)
    peers = {"gradient": Saliency, "deconvnet": Deconvolution, "guided": GuidedBackprop}
    work = {"floor default": lambda: floor(torch.contiguous_format), "floor cl": lambda: floor(torch.channels_last),
            "floor folded": lambda: floor(torch.channels_last, folded)}
    for rule, peer in peers.items():
        kwargs = {"abs": False} if peer is Saliency else {}
        work[rule] = lambda rule=rule: attribute(model, x, class_logit(TARGET), rule=rule)
        work[peer.__name__] = lambda peer=peer, kwargs=kwargs: peer(wrapped).attribute(leaf(), target=TARGET, **kwargs)
    timed = interleaved(work, args.repeats, rewarm=True)
    base = min(timed["floor default"], timed["floor cl"])
    rows.append(("forward+backward floor, default layout", timed["floor default"], None, base))
    rows.append(("forward+backward floor, channels-last", timed["floor cl"], None, base))
    rows.append(("forward+backward, batch norms folded, channels-last", timed["floor folded"], None, base))
    for rule, peer in peers.items():
        rows.append((f"{rule} (vs Captum {peer.__name__})", timed[rule], timed[peer.__name__], base))
    captum_guided = GuidedBackprop(wrapped).attribute(leaf(), target=TARGET)
    same = torch.equal(captum_guided, Saliency(wrapped).attribute(leaf(), target=TARGET, abs=False))

    def captum_ig(batch=None):
        return IntegratedGradients(wrapped).attribute(x, target=TARGET, n_steps=50, internal_batch_size=batch)
    slow = max(1, args.repeats // 10)
    timed = interleaved({"ours": lambda: integrated_gradients(model, x, class_logit(TARGET), steps=50,
                                                              tolerance=float("inf")),
                         "default": captum_ig, **{b: lambda b=b: captum_ig(b) for b in (4, 8, 16)}}, slow)
    rows.append(("integrated gradients, 50 steps (vs Captum default batch)", timed["ours"], timed["default"], None))
    rows.append(("integrated gradients, 50 steps (vs Captum best batch 4/8/16)", timed["ours"],
                 min(timed[b] for b in (4, 8, 16)), None))

    stub_torchvision()
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    layer = net._swish  # its last call is the 1280x7x7 head activation: pytorch-grad-cam keeps the last
    with GradCAM(model=wrapped, target_layers=[layer]) as peer_cam:
        timed = interleaved({"ours": lambda: grad_cam(model, x, class_logit(TARGET), "_swish@1"),
                             "peer": lambda: peer_cam(input_tensor=x, targets=[ClassifierOutputTarget(TARGET)])},
                            args.repeats)
    rows.append(("Grad-CAM (vs pytorch-grad-cam GradCAM)", timed["ours"], timed["peer"], None))

    occlude = dict(sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8), target=TARGET, baselines=0.5)

    def captum_occlusion(batch=1):
        with torch.no_grad():
            return Occlusion(lambda z: model(z).softmax(-1)).attribute(x, perturbations_per_eval=batch, **occlude)
    fast = {0.2: dict(drill=0.2), f"{DRILL} (default)": dict(drill=DRILL), 0.6: dict(drill=0.6)}
    half = model.device.type != "cpu" or fast_on_cpu("float16")  # else slow reference kernels: skipped
    if half:
        fast[f"{DRILL} float16"] = dict(drill=DRILL, precision="float16")
    timed = interleaved({"exact": lambda: occlusion(model, x, TARGET, mode="exact"), "default": captum_occlusion,
                         **{p: lambda p=p: captum_occlusion(p) for p in (2, 4, 8)},
                         **{d: lambda d=d: occlusion(model, x, TARGET, mode="fast", **fast[d]) for d in fast}}, slow)
    captum_best = min(timed[p] for p in (2, 4, 8))
    rows.append(("occlusion exact (vs Captum default)", timed["exact"], timed["default"], None))
    rows.append(("occlusion exact (vs Captum best batch 2/4/8)", timed["exact"], captum_best, None))
    exact_map = occlusion(model, x, TARGET, mode="exact")
    similarity = {}
    for setting in fast:
        similarity[setting] = ssim(occlusion(model, x, TARGET, mode="fast", **fast[setting]).attribution[0],
                                   exact_map.attribution[0])
        rows.append((f"occlusion fast, drill {setting} (vs Captum best batch)", timed[setting], captum_best, None))
    print_table(rows, model.device)
    print(f"\nCaptum GuidedBackprop on the default model equals the plain gradient: {same} "
          f"(it hooks nn.ReLU modules only; this model uses ReLU6)")
    print("occlusion fast vs exact, SSIM: " + ", ".join(f"drill {d}: {v:.3f}" for d, v in similarity.items()))
    if not half:
        print("float16 occlusion not timed: this CPU has no oneDNN float16 convolutions")


class _Normalize(torch.nn.Module):
    """The model's normalization as a module, so peers see the same pixel-space network."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.normalize(x)


def print_table(rows, device) -> None:
    print(f"device: {device}, threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'work':<62} {'convscope s':>11} {'peer s':>9} {'speed-up':>9} {'vs floor':>9}")
    for name, ours, theirs, floor in rows:
        peer = f"{theirs:9.3f}" if theirs else " " * 9
        ratio = f"{theirs / ours:8.2f}x" if theirs else " " * 9
        to_floor = f"{ours / floor:8.2f}x" if floor else " " * 9
        print(f"{name:<62} {ours:11.3f} {peer} {ratio} {to_floor}")


if __name__ == "__main__":
    main()
