"""Tour section: gradients to the image, CAMs, LRP, perturbations, occlusion and segmentation."""

from __future__ import annotations

import time

from convscope.attribute.occlusion import occlusion
from convscope.attribute.cam import PERTURBATIONS
from convscope.attribute.rollout import attention_maps
from convscope.attribute.rise import rise
from convscope.attribute.saliency import METHODS, TRANSFORMER_METHODS, Saliency, saliency
from convscope.attribute.targets import objective_for
from convscope.attribute.segment import segment
from convscope.core.metrics import ssim
from convscope.core.render import picture, side_by_side
from convscope.samples import sample_image
from convscope.tour.runner import Shot, TourContext

SECTION = "Attribution: gradients to the image"
#: Left out of the tour: Score-CAM and Ablation-CAM run a forward per channel (1280 on the default
#: model, 25-30 s each on 2 CPU cores); RISE is shown with half its default masks.
SLOW_METHODS = (*PERTURBATIONS, "rise")
RISE_MASKS = 1000


def attribute_shots(context: TourContext) -> list[Shot]:
    model = context.model
    cat = sample_image("cat", size=model.input_size)
    coffee = sample_image("coffee", size=model.input_size)
    transformer = bool(attention_maps(model, cat))  # attention rollout only where there is attention
    shots = [Shot(SECTION, f"{method} (cat)", _method(model, cat, method)) for method in METHODS
             if (transformer or method not in TRANSFORMER_METHODS) and method not in SLOW_METHODS]
    shots.append(Shot(SECTION, f"rise, {RISE_MASKS} masks (cat)", lambda: _rise(model, cat)))
    shots.append(Shot(SECTION, "guided (coffee)", _method(model, coffee, "guided")))
    shots.append(Shot(SECTION, "Grad-CAM (coffee)", _method(model, coffee, "gradcam")))
    if model.channels == 3:
        shots.append(Shot(SECTION, "lrp (coffee)", _method(model, coffee, "lrp")))
    shots.append(Shot(SECTION, "Occlusion exact vs fast (coffee)", lambda: _occlusion(model, coffee)))
    shots.append(Shot(SECTION, "Segmentation from saliency (coffee)", lambda: _segment(model, coffee)))
    return shots


def _method(model, x, method: str):
    return lambda: saliency(model, x, method=method).picture()


def _rise(model, x):
    objective = objective_for(model, x)
    return Saliency("rise", rise(model, x, objective, masks=RISE_MASKS), x, objective).picture()


def _occlusion(model, x):
    patch = max(2, min(x.shape[-2:]) // 14)  # 16 px at 224, as Zeiler & Fergus's grey squares
    target = _top(model, x)
    seconds, maps = {"exact": float("inf"), "fast": float("inf")}, {}
    for _ in range(2):  # the faster of two interleaved runs each, so a slow spell of the machine hits both
        for mode in seconds:
            started = time.perf_counter()
            maps[mode] = occlusion(model, x, target, mode=mode, patch=patch, stride=max(1, patch // 2))
            seconds[mode] = min(seconds[mode], time.perf_counter() - started)
    exact, fast = maps["exact"], maps["fast"]
    similarity = ssim(fast.attribution[0], exact.attribution[0])
    image = side_by_side([exact.picture().array_tensor(), fast.picture().array_tensor()[:, :, x.shape[-1]:]])
    return picture(image, f"exact {seconds['exact']:.1f} s | fast {seconds['fast']:.1f} s, SSIM {similarity:.2f} "
                          f"to exact (faster of two runs)", exact_seconds=seconds["exact"],
                   fast_seconds=seconds["fast"], ssim=similarity, baseline=float(exact.baseline[0]))


def _top(model, x) -> int:
    from convscope.inspect.predictions import probabilities

    return int(probabilities(model, x).argmax())


def _segment(model, x):
    return segment(model, x).picture()
