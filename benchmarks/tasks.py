"""Task targets' speed, in one run: Grad-CAM of a segmentation region against pytorch-grad-cam,
D-RISE on a detector against the plain batched implementation, and exact occlusion of a region
against brute force.

Run: python benchmarks/tasks.py [--repeats 3] [--masks 1000]
Needs: pip install --no-deps torchvision==0.28.0 grad-cam ttach (the tests' stand-ins for
torchvision's compiled operators are loaded first: tests/torchvision_cpu.py).

Random-initialized torchvision models (LR-ASPP MobileNetV3 at 224 px; SSDlite MobileNetV3 at its
320 px) with batch-norm statistics measured on the sample photos. Each row prints the seconds of
each side (best of --repeats, timed in turn) and how far the two maps are apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import torchvision_cpu  # noqa: E402 (before torchvision)
from tests.helpers import calibrated  # noqa: E402
from timing import interleaved  # noqa: E402

import convscope as cs  # noqa: E402
from convscope.attribute.occlusion import occlusion  # noqa: E402
from convscope.attribute.rise import rise, rise_masks  # noqa: E402
from convscope.attribute.targets import objective_for  # noqa: E402
from convscope.core.hooks import frozen  # noqa: E402
from convscope.core.objectives import OUTPUT  # noqa: E402


def segmentation_row(repeats: int) -> tuple:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    model = calibrated(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=6), 224)
    x = cs.sample_image("coffee", size=224)
    objective = objective_for(model, x)
    with torch.no_grad():
        predicted = model(x).argmax(1)[0]
    index = int(objective.name.split()[1])
    mask = (predicted == index).float().numpy()
    layer = "backbone.16"

    class Wrapped(torch.nn.Module):  # the peer's documented wrapping: a tensor, not a dict
        def __init__(self):
            super().__init__()
            self.net = model.net

        def forward(self, z):
            return self.net(z)["out"]
    target = [SemanticSegmentationTarget(index, mask)]
    with GradCAM(model=Wrapped(), target_layers=[dict(model.net.named_modules())[layer]]) as peer:
        ours = lambda: cs.saliency(model, x, objective, method="gradcam", layer=layer).map[0]  # noqa: E731
        theirs = lambda: torch.from_numpy(peer(x, targets=target))[0]  # noqa: E731
        timed = interleaved({"ours": ours, "peer": theirs}, repeats)
        got, reference = ours(), theirs()
    scaled = (got - got.min()) / (got.max() - got.min())
    return ("Grad-CAM, segmentation region, LR-ASPP 224 px (vs pytorch-grad-cam)", timed["ours"], timed["peer"],
            float((scaled - reference).abs().max()))


def occlusion_row(repeats: int) -> tuple:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    model = calibrated(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=6), 224)
    x = cs.sample_image("coffee", size=224)
    run = {mode: (lambda mode=mode: occlusion(model, x, patch=32, stride=16, mode=mode).probabilities)
           for mode in ("exact", "brute")}
    timed = interleaved(run, repeats)
    got, reference = run["exact"](), run["brute"]()
    return ("exact occlusion, segmentation region, LR-ASPP 224 px (vs brute force)", timed["exact"],
            timed["brute"], float((got - reference).abs().max() / reference.abs().max()))


def drise_row(repeats: int, count: int) -> tuple:
    detection = torchvision_cpu.torchvision_detection()
    torch.manual_seed(0)
    model = calibrated(detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3),
                       320)
    x = cs.sample_image("astronaut", size=320)
    objective = objective_for(model, x, "box:0", perturbation=True)

    def plain() -> torch.Tensor:
        """Batches of 64 masked images through the network as it is; the similarity of each."""
        total, scores = torch.zeros(x.shape[-2:]), []
        with frozen(model.net), torch.no_grad():
            for start in range(0, count, 64):
                masks = rise_masks(count, x.shape[-2:], seed=0, start=start, stop=min(count, start + 64))
                values = objective({OUTPUT: model(x * masks)})
                scores.append(values)
                total += (values.view(-1, 1, 1) * masks[:, 0]).sum(0)
            scores = torch.cat(scores)
            masks = rise_masks(count, x.shape[-2:], seed=0)[:, 0].sum(0)
        return (total - scores.mean() * masks) / (count * 0.5)
    ours = lambda: rise(model, x, objective, masks=count)[0]  # noqa: E731
    timed = interleaved({"ours": ours, "peer": plain}, repeats)
    got, reference = ours(), plain()
    return (f"D-RISE, {count} masks, SSDlite 320 px (vs plain batches of 64)", timed["ours"], timed["peer"],
            float((got - reference).abs().max() / reference.abs().max()))


def drise_bound(count: int) -> tuple:
    """The best D-RISE could do by running the network: ``count`` forwards of the fast copy alone
    (folded, channels-last, batches of 4: what D-RISE runs), no masks made and nothing scored."""
    from convscope.core.fastpath import fast_model, in_fast_layout

    detection = torchvision_cpu.torchvision_detection()
    torch.manual_seed(0)
    model = calibrated(detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3),
                       320)
    x = cs.sample_image("astronaut", size=320).expand(4, -1, -1, -1).contiguous()
    with frozen(model.net), torch.inference_mode():
        fast = fast_model(model, [], x)

        def forwards():
            for _ in range(count // 4):
                in_fast_layout(fast, lambda z: fast(z), x)
        return (f"bound: {count} forwards of the fast copy alone, SSDlite 320 px", interleaved({"f": forwards}, 1)["f"])


def occlusion_bound() -> tuple:
    """The best an exact replay could do on LR-ASPP: the share of a forward pass spent from the first
    global pooling on (MobileNetV3's squeeze-excitation in ``backbone.4``: after it every position
    changes, so the rest runs densely for every copy), on a batch of 16 copies."""
    import time

    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    model = calibrated(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=6), 224)
    x = cs.sample_image("coffee", size=224).expand(16, -1, -1, -1).contiguous()
    reached = {}
    hook = dict(model.net.named_modules())["backbone.4.block.2"].register_forward_pre_hook(
        lambda *_: reached.update(at=time.perf_counter()))
    best_total, best_dense = float("inf"), float("inf")
    with frozen(model.net), torch.inference_mode():
        for _ in range(4):
            reached.clear()
            started = time.perf_counter()
            model(x)
            ended = time.perf_counter()
            best_total, best_dense = min(best_total, ended - started), min(best_dense, ended - reached["at"])
    hook.remove()
    return "bound: exact occlusion on LR-ASPP, forward / its part from the first squeeze-excitation on", \
        best_total / best_dense


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--masks", type=int, default=1000)
    args = parser.parse_args()
    rows = [segmentation_row(args.repeats), drise_row(max(1, args.repeats // 3), args.masks),
            occlusion_row(max(1, args.repeats // 3))]
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'work':<70} {'convscope s':>11} {'peer s':>9} {'speed-up':>9} {'maps apart':>11}")
    for name, ours, theirs, apart in rows:
        print(f"{name:<70} {ours:11.3f} {theirs:9.3f} {theirs / ours:8.2f}x {apart:11.1e}")
    name, seconds = drise_bound(args.masks)
    print(f"{name:<70} {seconds:11.3f}  (the plain batches' time over it: the approach's best speed-up)")
    name, ratio = occlusion_bound()
    print(f"{name:<70} {ratio:8.2f}x  (the best speed-up any replay that recomputes windows can reach)")


if __name__ == "__main__":
    main()
