"""The heavy requests: what each job kind accepts (validated ranges) and how it runs.

Each ``*Request`` is the JSON body of ``POST /api/jobs/KIND``; ``runner`` turns a validated
request into ``run(model, job)`` for the job queue, which reports frames through ``job.report``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from convscope.attribute.occlusion import occlusion
from convscope.attribute.saliency import METHODS as SALIENCY_METHODS
from convscope.attribute.saliency import saliency
from convscope.attribute.targets import class_indices, objective_for, task_of
from convscope.core.objectives import Objective
from convscope.core.images import fit
from convscope.core.render import Picture
from convscope.evaluate.curves import deletion, insertion
from convscope.evaluate.report import with_curves
from convscope.models.model import Model
from convscope.optimize.adversarial import attack
from convscope.optimize.dream import dream
from convscope.optimize.invert import invert
from convscope.optimize.style import stylize
from convscope.optimize.visualize import visualize_channel
from convscope.samples import STYLES, style_image
from convscope.web.jobs import Job

ATTRIBUTIONS = (*SALIENCY_METHODS, "occlusion")
#: The explorer's style weight (the library's is 10): at 256 px and 100 steps the style shows and
#: the content stays recognizable.
STYLE_WEIGHT = 3.0


#: Lengths of the strings a request may carry (ids, layer and class names); longer is refused.
ID = Field(max_length=64, description="Image id from /api/images.")
LAYER, CLASS = 200, 200


class _Request(BaseModel):
    """Strict: numbers must be numbers (``true`` is not 1), unknown fields are refused."""
    model_config = ConfigDict(extra="forbid", strict=True)


class DreamRequest(_Request):
    image: str = ID
    layer: str = Field(max_length=LAYER)
    channel: int | None = Field(None, ge=0, description="One channel to amplify; the whole layer when none.")
    octaves: int = Field(3, ge=1, le=6)
    steps: int = Field(10, ge=1, le=50)
    step_size: float = Field(0.015, gt=0, le=0.1)
    size: int = Field(384, ge=64, le=512, description="Longer side of the dreamed image.")


class StyleRequest(_Request):
    image: str = ID
    style: Literal[STYLES] = "stained-glass"  # type: ignore[valid-type]
    size: int = Field(256, ge=64, le=512)
    steps: int = Field(100, ge=1, le=400)
    style_weight: float = Field(STYLE_WEIGHT, gt=0, le=1e4, description="Higher: more style, less content.")


class InvertRequest(_Request):
    image: str = ID
    layer: str = Field(max_length=LAYER)
    steps: int = Field(100, ge=1, le=400)


class AttackRequest(_Request):
    image: str = ID
    method: Literal["fgsm", "pgd", "deepfool", "cw"] = "pgd"
    target: str | None = Field(None, max_length=CLASS, description="Class name or index; none for untargeted.")
    eps: float = Field(2 / 255, gt=0, le=32 / 255, description="Largest change of a pixel (fgsm, pgd).")
    steps: int = Field(10, ge=1, le=100)


class VisualizeRequest(_Request):
    layer: str = Field(max_length=LAYER)
    channel: int = Field(ge=0)
    steps: int = Field(128, ge=1, le=512)
    size: int = Field(128, ge=32, le=256)


class AttributionRequest(_Request):
    image: str = ID
    method: Literal[ATTRIBUTIONS] = "gradient"  # type: ignore[valid-type]
    target: str | None = Field(None, max_length=CLASS, description="Class name or index, or a target of another "
                               "task (box:K[:PART], region:CLASS[~OTHER], up[:INDEX], sigmoid:CLASS); the model's "
                               "answer when none (top class, box 0, largest region, the output).")
    curves: bool = Field(False, description="Also the map's deletion and insertion curves.")


def _frames(job: Job, total: int) -> Callable[[int, torch.Tensor], None]:
    return lambda step, images: job.report(step / total, images)


def run_dream(request: DreamRequest, image: torch.Tensor) -> Callable[[Model, Job], Picture]:
    scale = request.size / max(image.shape[-2:])
    shape = tuple(max(8, round(side * scale)) for side in image.shape[-2:])

    def run(model: Model, job: Job) -> Picture:
        job.report(0.0, image[0])
        x = torch.nn.functional.interpolate(image, size=shape, mode="bilinear", align_corners=False).clamp(0, 1)
        every = max(1, request.steps // 3)
        result = dream(model, x, request.layer, channel=request.channel, octaves=request.octaves,
                       steps=request.steps, step_size=request.step_size,
                       callback=_frames(job, request.octaves * request.steps), every=every)
        job.keep(result.images[0])
        return result.picture()
    return run


def run_style(request: StyleRequest, image: torch.Tensor) -> Callable[[Model, Job], Picture]:
    def run(model: Model, job: Job) -> Picture:
        job.report(0.0, image[0])
        result = stylize(model, image, style_image(request.style, size=request.size), size=request.size,
                         steps=request.steps, style_weight=request.style_weight,
                         callback=_frames(job, request.steps))
        job.keep(result.images[0])
        return result.picture()
    return run


def _at_input_size(image: torch.Tensor, compute: Callable[[Model, Job, torch.Tensor], Picture]
                   ) -> Callable[[Model, Job], Picture]:
    """A job that fits the image to the model's input size, shows it as the first frame, then
    returns ``compute(model, job, x)``."""
    def run(model: Model, job: Job) -> Picture:
        x = fit(image, model.input_size)
        job.report(0.0, x[0])
        return compute(model, job, x)
    return run


def run_invert(request: InvertRequest, image: torch.Tensor) -> Callable[[Model, Job], Picture]:
    def compute(model: Model, job: Job, x: torch.Tensor) -> Picture:
        result = invert(model, x, request.layer, steps=request.steps, callback=_frames(job, request.steps))
        job.keep(result.images[0])
        return result.picture()
    return _at_input_size(image, compute)


def run_attack(request: AttackRequest, image: torch.Tensor) -> Callable[[Model, Job], Picture]:
    def compute(model: Model, job: Job, x: torch.Tensor) -> Picture:
        options = {"eps": request.eps} if request.method in ("fgsm", "pgd") else {}
        if request.method != "fgsm":  # progress at each step (the frames would look unchanged)
            options["steps"] = request.steps
            total = request.steps * (5 if request.method == "cw" else 1)  # C&W: 5 searches of ``steps``
            options["callback"] = lambda step, images: job.report(step / total)
        result = attack(model, x, request.method, target=request.target, **options)
        job.keep(result.adversarial[0])
        return result.picture(model)
    return _at_input_size(image, compute)


def run_visualize(request: VisualizeRequest) -> Callable[[Model, Job], Picture]:
    def run(model: Model, job: Job) -> Picture:
        result = visualize_channel(model, request.layer, request.channel, steps=request.steps, size=request.size,
                                   callback=_frames(job, request.steps))
        job.keep(result.images[0])
        return result.picture()
    return run


def run_attribution(request: AttributionRequest, image: torch.Tensor) -> Callable[[Model, Job], Picture]:
    def compute(model: Model, job: Job, x: torch.Tensor) -> Picture:
        target = _target(model, x.to(model.device), request.target)
        share = 0.5 if request.curves else 1.0  # the curves take about the other half
        if request.method == "occlusion":
            result = occlusion(model, x, target, callback=lambda done: job.report(share * done))
        else:
            result = saliency(model, x, target, method=request.method, callback=lambda done: job.report(share * done))
        job.keep(result.map[0])
        if not request.curves:
            return result.picture()
        job.report(0.5)
        target = target.cpu() if isinstance(target, torch.Tensor) else target
        curves = {"deletion": deletion(model, x, result.map, target, callback=lambda done: job.report(0.5 + done / 4)),
                  "insertion": insertion(model, x, result.map, target,
                                         callback=lambda done: job.report(0.75 + done / 4))}
        return with_curves(result.picture(), curves)
    return _at_input_size(image, compute)


def _target(model: Model, x: torch.Tensor, typed: str | None) -> torch.Tensor | Objective:
    """A classifier's class as ``(1,)`` indices (its curves then read the probability); any other
    target, of any task, as the Objective it names."""
    if task_of(model, x) == "classification" and (typed is None or (":" not in typed and typed not in ("up", "down"))):
        return class_indices(model, x, typed)
    return objective_for(model, x, typed)
