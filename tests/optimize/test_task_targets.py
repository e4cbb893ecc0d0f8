"""Optimizing an image for a task's target, on the shipped shapes models: a segmenter's class over a
mask, and an object drawn where a detector will find it. Noise starts with neither."""

import numpy as np
import pytest
import torch
from PIL import Image

import convscope as cs
from convscope.core.boxes import iou
from convscope.core.task_objectives import region
from convscope.inspect.detections import detect
from convscope.optimize.visualize import visualize, visualize_box
from tests.cli.test_cli import run

SQUARE, CIRCLE = 2, 0  # the segmenter's class 0 is the background; the detector's classes start at circle


@pytest.fixture(scope="module")
def segmenter():
    return cs.load_model("shapes_segmenter", device="cpu")


@pytest.fixture(scope="module")
def detector():
    return cs.load_model("shapes_detector", device="cpu")


def predicted_share(segmenter, image, mask) -> tuple[float, float]:
    """The share of the mask's pixels, and of the others, that the segmenter labels a square."""
    with torch.no_grad():
        labels = segmenter(image).argmax(1, keepdim=True).float()
    labels = torch.nn.functional.interpolate(labels, size=mask.shape, mode="nearest")[0, 0]
    square = labels == SQUARE
    return float(square[mask].float().mean()), float(square[~mask].float().mean())


def test_an_image_optimized_for_a_region_is_segmented_as_that_class_there(segmenter):
    mask = torch.zeros(224, 224, dtype=torch.bool)
    mask[64:160, 64:160] = True
    start_inside, _ = predicted_share(segmenter, torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)),
                                      mask)
    result = visualize(segmenter, region(SQUARE, mask.float()), steps=48, seed=0)
    inside, outside = predicted_share(segmenter, result.images, mask)
    assert start_inside < 0.05 and inside > 0.6 and inside > 5 * outside, (start_inside, inside, outside)


def test_an_object_is_drawn_where_the_detector_then_finds_it(detector):
    box = (40.0, 100.0, 120.0, 180.0)
    noise = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    assert not [d for d in detect(detector, noise)[0] if d.label == "circle"]
    result = visualize_box(detector, box, "circle", seed=0)
    found = [d for d in detect(detector, result.images)[0] if d.index == CIRCLE]
    overlap = max(float(iou(torch.tensor([d.box]), torch.tensor([box])).flatten()[0]) for d in found) if found else 0
    assert overlap > 0.4 and result.name == "circle at 40, 100, 120, 180"


def test_the_command_line_draws_a_region_and_a_box_and_refuses_in_one_line(capsys, monkeypatch, tmp_path):
    mask = np.zeros((224, 224), np.uint8)
    mask[64:160, 64:160] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, out, err = run(capsys, monkeypatch, "visualize", "--model", "shapes_segmenter", "--target",
                         f"region:square@{tmp_path / 'mask.png'}", "--steps", "4", "-o", str(tmp_path / "r.png"))
    assert code == 0 and (tmp_path / "r.png").is_file(), err
    code, out, err = run(capsys, monkeypatch, "visualize", "--model", "shapes_detector", "--target", "square",
                         "--box", "80,80,140,140", "--steps", "2", "-o", str(tmp_path / "b.png"))
    assert code == 0 and (tmp_path / "b.png").is_file(), err
    for args, message in [(["--model", "shapes_detector", "--target", "square", "--box", "80,80,40,140"], "X1 < X2"),
                          (["--model", "shapes_detector", "--target", "box:0"], "--target CLASS --box"),
                          (["--model", "shapes_segmenter", "--target", "region:square"], "give the region's mask")]:
        code, out, err = run(capsys, monkeypatch, "visualize", *args, "--steps", "2", "-o", str(tmp_path / "x.png"))
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x.png").exists()
