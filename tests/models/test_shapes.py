"""The shapes scenes and the shipped shapes detector and segmenter: scenes carry true boxes and masks;
the heads, trained by scripts/train_shapes.py, find the shapes on scenes they never saw; only the heads
ship (the trunk is the default model's); the tour's section on them runs."""

from __future__ import annotations

from importlib import resources

import pytest
import torch

import convscope as cs
from convscope.core.boxes import iou
from convscope.data.scenes import SHAPES, scene
from convscope.inspect.detections import detect
from convscope.models.builtin import efficientnet_lite0
from convscope.models.weights import read_state_dict
from convscope.tour import task_shots
from convscope.tour.runner import TourContext

#: Scenes neither training (0..1999), the script's test (100000..) nor the tour (200000..) uses.
SEEDS = range(300_000, 300_040)


@pytest.fixture(scope="module")
def detector() -> cs.Model:
    return cs.load_model("shapes_detector", device="cpu")


@pytest.fixture(scope="module")
def segmenter() -> cs.Model:
    return cs.load_model("shapes_segmenter", device="cpu")


@pytest.fixture(scope="module")
def scenes() -> list:
    return [scene(seed) for seed in SEEDS]


def test_a_scene_is_its_seed_and_its_boxes_hold_its_masks():
    first, again = scene(7), scene(7)
    torch.testing.assert_close(first.image, again.image)
    assert first.image.shape == (1, 3, 224, 224) and 0 <= float(first.image.min()) <= float(first.image.max()) <= 1
    for s in (scene(seed) for seed in range(20)):
        for shape, box, mask in zip(s.classes, s.boxes, s.masks):
            ys, xs = mask.nonzero(as_tuple=True)
            x1, y1, x2, y2 = box.tolist()
            assert x1 <= int(xs.min()) and int(xs.max()) < x2 and y1 <= int(ys.min()) and int(ys.max()) < y2
            if SHAPES[int(shape)] == "square":  # a square fills its box
                assert int(mask.sum()) == (x2 - x1) * (y2 - y1)
        assert set(s.labels.unique().tolist()) <= {0, *(int(c) + 1 for c in s.classes)}


def test_only_the_heads_ship_and_the_trunk_is_the_default_model(detector, segmenter):
    lite = efficientnet_lite0(None).net.state_dict()
    for model in (detector, segmenter):
        shipped = resources.files("convscope.models").joinpath(f"{model.name}.pt")
        with resources.as_file(shipped) as path:
            assert not any(name.startswith("backbone.") for name in read_state_dict(path))
        for name, value in model.net.backbone.state_dict().items():
            torch.testing.assert_close(value, lite[name], rtol=0, atol=0)


def test_the_detector_finds_shapes_it_never_saw(detector, scenes):
    hits = found = wanted = 0
    for s, boxes in zip(scenes, detect(detector, torch.cat([s.image for s in scenes]))):
        found, wanted = found + len(boxes), wanted + len(s.boxes)
        for d in boxes:
            overlaps = iou(torch.tensor(d.box).view(1, 4), s.boxes).view(-1)
            best = int(overlaps.argmax())
            hits += bool(overlaps[best] >= 0.5 and int(s.classes[best]) == d.index)
    # a detector guessing one box of a random class per scene would score near 0.1 and 0.05
    assert hits / found > 0.7 and hits / wanted > 0.7, (hits, found, wanted)


def test_the_segmenter_labels_pixels_of_shapes_it_never_saw(segmenter, scenes):
    x = torch.cat([s.image for s in scenes[:16]])
    with torch.no_grad():
        predicted = segmenter(x).argmax(1)
    truth = torch.stack([s.labels for s in scenes[:16]])
    ious = [float(((predicted == c) & (truth == c)).sum() / ((predicted == c) | (truth == c)).sum())
            for c in range(1 + len(SHAPES))]
    assert min(ious) > 0.5, ious


def test_a_box_gradient_concentrates_on_its_shape(detector, scenes):
    """Grad-CAM of each box puts more of its mass inside the true box than the box's share of the image
    (what a map that knows nothing would put there), by a margin."""
    x = torch.cat([s.image for s in scenes[:8]])
    maps = cs.saliency(detector, x, "box:0", method="gradcam").map
    for s, d, heat in zip(scenes, detect(detector, x), maps):
        truth = s.boxes[int(iou(torch.tensor(d[0].box).view(1, 4), s.boxes).argmax())]
        x1, y1, x2, y2 = (int(v) for v in truth.tolist())
        inside = float(heat[y1:y2, x1:x2].sum() / heat.sum())
        share = (x2 - x1) * (y2 - y1) / heat.numel()
        assert inside > min(1.0, 1.5 * share), (inside, share)


def test_the_tour_section_on_the_shapes_models(monkeypatch, tmp_path):
    monkeypatch.setattr(task_shots, "SEEDS", (200_000, 200_001))
    monkeypatch.setattr(task_shots, "MASKS", 100)
    context = TourContext(cs.load_model("efficientnet_lite0", device="cpu"), tmp_path)
    shots = task_shots.task_shots(context)
    assert [shot.title for shot in shots][-1] == "Pointing game against the true shapes"
    pictures = [shot.make() for shot in shots]
    assert "true shapes outlined" in pictures[0].caption and pictures[0].numbers["boxes"] >= 1
    assert all(p.array.shape[0] > 100 for p in pictures)
    assert task_shots.task_shots(TourContext(cs.load_model("digits_cnn"), tmp_path)) == []
