"""Long loops say how far they are: Score-CAM's and Ablation-CAM's channels, the deletion and
insertion curves' points (the explorer had sat at 0% and at 50% meanwhile)."""

import pytest
import torch

from convscope.attribute import cam
from convscope.attribute.cam import class_activation_map
from convscope.core.objectives import class_logit
from convscope.evaluate.curves import deletion, insertion


def assert_rises_to_one(done: list[float]) -> None:
    assert len(done) >= 2 and done == sorted(done) and done[-1] == pytest.approx(1.0) and done[0] < 1.0


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_perturbation_cams_report_their_channels(digits, method, monkeypatch):
    # a channel or two per pass (the 8x8 digits' channels would all fit in one)
    monkeypatch.setattr(cam, "CHUNK", 0 if method == "scorecam" else 1)
    monkeypatch.setattr(cam, "GROWN_CHUNK", 2)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    done = []
    with_progress = class_activation_map(digits, x, class_logit(3), "features.2", method=method, callback=done.append)
    assert_rises_to_one(done)
    assert torch.equal(with_progress, class_activation_map(digits, x, class_logit(3), "features.2", method=method))


@pytest.mark.parametrize("curve", [deletion, insertion])
def test_curves_report_their_points(digits, curve):
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
    done = []
    reported = curve(digits, x, maps, torch.tensor([3]), steps=64, callback=done.append)
    assert_rises_to_one(done)
    assert torch.equal(reported.scores, curve(digits, x, maps, torch.tensor([3]), steps=64).scores)
