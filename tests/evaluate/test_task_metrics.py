"""Evaluation with task targets: the perturbation metrics score a region or a box as the same
objective evaluated by hand on the same perturbed images; batched targets equal one at a time;
randomized copies explain what the trained model was asked; the pointing games against a hand
count; refusals in one line."""

from __future__ import annotations

import json

import pytest
import torch

import convscope as cs
from convscope.attribute.targets import objective_for
from convscope.core.objectives import INPUT, OUTPUT, channel
from convscope.errors import ConvscopeError
from convscope.evaluate.curves import deletion, insertion
from convscope.evaluate.pointing import box_masks, energy_pointing_game, pointing_game
from convscope.evaluate.randomization import randomized
from convscope.evaluate.road import road
from convscope.evaluate.robustness import infidelity
from convscope.evaluate.runner import evaluate
from convscope.inspect.detections import detect
from tests.attribute.test_detection import cell_detector
from tests.attribute.test_tasks import _Segmenter
from tests.cli.test_cli import run


def _by_hand(model: cs.Model, images: torch.Tensor, objective) -> torch.Tensor:
    """The objective on the plain network, one image at a time, no fast path."""
    with torch.no_grad():
        return torch.cat([(objective.perturbed or objective)({OUTPUT: model(image[None]), INPUT: image[None]})
                          for image in images])


def _segmenter() -> tuple[cs.Model, torch.Tensor]:
    model = cs.Model(_Segmenter(), name="segmenter", input_size=(24, 24))
    return model, torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(3))


def test_deletion_of_a_region_equals_the_region_score_of_each_perturbed_image():
    model, x = _segmenter()
    objective = objective_for(model, x, "region:1")
    maps = torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(4))
    curve = deletion(model, x, maps, objective, steps=8)
    for b in range(2):
        order = maps[b].flatten().argsort(descending=True, stable=True)
        images = []
        for fraction in curve.fractions:
            taken = torch.zeros(24 * 24, dtype=torch.bool)
            taken[order[:round(float(fraction) * 24 * 24)]] = True
            images.append(torch.where(taken.view(1, 24, 24), torch.zeros_like(x[b]), x[b]))
        expected = _by_hand(model, torch.stack(images), objective.example(b))
        torch.testing.assert_close(curve.scores[b], expected, rtol=1e-4, atol=1e-5)


def test_task_targets_batched_equal_one_at_a_time_for_every_curve():
    model, x = _segmenter()
    objective = objective_for(model, x)  # each image's largest predicted class
    maps = torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(5))
    for metric in (lambda m, i, t: insertion(model, i, m, t, steps=6).scores,
                   # ROAD's noise draws follow the batch: none here
                   lambda m, i, t: road(model, i, m, t, fractions=(0.2, 0.6), noise=0.0).scores,
                   lambda m, i, t: infidelity(model, i, m, t, samples=4)[:, None]):
        together = metric(maps, x, objective)
        alone = torch.cat([metric(maps[b:b + 1], x[b:b + 1], objective.example(b)) for b in range(2)])
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_deletion_of_a_box_reads_d_rise_similarity_and_the_box_cell_decides_it():
    model = cell_detector()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    objective = objective_for(model, x, "box:0")
    assert "score" in objective.name and "D-RISE" in objective.perturbed.name
    box = [int(v) for v in torch.tensor(detect(model, x)[0][0].box)]
    inside = torch.zeros(1, 32, 32)
    inside[:, box[1]:box[3], box[0]:box[2]] = 1.0
    outside = 1.0 - inside
    first, last = (deletion(model, x, maps, objective, steps=16) for maps in (inside, outside))
    # removing the box's own cell first changes its similarity at once; removing the others first, not
    # until the last 64 pixels, which are the cell's
    assert first.scores[0, 4] != pytest.approx(float(first.scores[0, 0]), abs=1e-4)
    torch.testing.assert_close(last.scores[0, :16], last.scores[0, :1].expand(16))
    expected = _by_hand(model, torch.zeros(1, 3, 32, 32), objective)
    torch.testing.assert_close(last.scores[0, -1:], expected, rtol=1e-4, atol=1e-5)


def test_pointing_games_by_hand():
    maps = torch.zeros(3, 40, 40)
    maps[0, 5, 5] = 1.0      # on the object
    maps[1, 30, 12] = 1.0    # 10 pixels below it: within the tolerance of 15, not within 5
    maps[2, 38, 38] = 1.0    # far
    maps[:, 20, 20] += 0.5
    truth = box_masks(torch.tensor([[0.0, 0.0, 20.0, 20.0]] * 3), (40, 40))
    assert truth[0].sum() == 400 and truth[0, 19, 19] and not truth[0, 20, 20]
    assert pointing_game(maps, truth).tolist() == [1.0, 1.0, 0.0]
    assert pointing_game(maps, truth, tolerance=5).tolist() == [1.0, 0.0, 0.0]
    # energy: the positive mass inside over all of it (negative values do not count)
    maps[0, 30, 30] = -7.0
    torch.testing.assert_close(energy_pointing_game(maps, truth), torch.tensor([1 / 1.5, 0.0, 0.0]))


def test_evaluate_a_segmenter_with_truth_and_mprt_keeps_the_target_fixed():
    model, x = _segmenter()
    truth = box_masks(torch.tensor([[0.0, 0.0, 12.0, 24.0]] * 2), (24, 24))
    report = evaluate(model, x, ["gradient", "gradcam"], ["deletion", "pointing-game", "energy-pointing-game",
                                                         "mprt"], "region:1", truth=truth,
                      options={"mprt": {"blocks": 2}})
    assert report.classes is None and report.labels[0].startswith("class 1 over its predicted pixels")
    assert report.score == report.labels[0]  # a region is scored as it is explained
    for method in ("gradient", "gradcam"):
        maps = report.maps[method]
        torch.testing.assert_close(report.values["pointing-game"][method], pointing_game(maps, truth))
        torch.testing.assert_close(report.values["energy-pointing-game"][method], energy_pointing_game(maps, truth))
    copy = randomized(model, ["head"])
    assert copy.output == model.output and copy.task == model.task and copy.net is not model.net
    assert json.loads(json.dumps(report.as_dict()))["targets"] == report.labels


def test_task_metrics_refuse_in_one_line():
    model, x = _segmenter()
    with pytest.raises(ConvscopeError, match="random-logit compares the maps of two classes"):
        evaluate(model, x, ["gradient"], ["random-logit"], "region:1")
    with pytest.raises(ConvscopeError, match="pointing-game need where the object is"):
        evaluate(model, x, ["gradient"], ["pointing-game"], "region:1")
    with pytest.raises(ConvscopeError, match="ground truth must be one mask per image"):
        evaluate(model, x, ["gradient"], ["pointing-game"], "region:1", truth=torch.ones(2, 5, 5))
    with pytest.raises(ConvscopeError, match="reads inner layers"):
        deletion(model, x, torch.rand(2, 24, 24), channel("body.0", 0))


def test_cli_evaluates_a_box_with_a_truth_box(tmp_path, monkeypatch, capsys):
    from PIL import Image
    image = tmp_path / "noise.png"
    Image.fromarray((torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0)) * 255).byte().numpy()
                    ).save(image)
    detector = "tests.attribute.test_detection:cell_detector"
    code, out, err = run(capsys, monkeypatch, "evaluate", str(image), "-o", str(tmp_path / "report"), "-m", detector,
                         "--methods", "gradient,rise", "--metrics", "insertion,pointing-game", "--target", "box:0",
                         "--truth", "0,0,16,16")
    assert code == 0, err
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["targets"][0].startswith("score of box 0") and set(saved["table"]) == {"gradient", "rise"}
    assert "pointing-game" in saved["table"]["rise"] and "| rise |" in out
    code, out, err = run(capsys, monkeypatch, "evaluate", str(image), "-o", str(tmp_path / "again"), "-m", detector,
                         "--metrics", "pointing-game", "--truth", "0,0,x,16")
    assert code == 2 and err.count("\n") == 1 and "a box is four numbers" in err
