"""Detection: one box of a detector explained, checked against independent computations: a
detector whose answer is known, torchvision's own post-processed detections and their autograd,
pytorch-grad-cam with a score target on torchvision's output, and D-RISE written out mask by mask.

torchvision's detectors run here through the tests' CPU stand-ins for its compiled operators
(:func:`tests.torchvision_cpu.torchvision_detection`); random weights, batch-norm statistics measured on
the sample photos so that the network responds to its input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convscope as cs
from convscope.attribute.core import attribute
from convscope.attribute.rise import rise, rise_masks
from convscope.attribute.occlusion import occlusion
from convscope.attribute.targets import objective_for
from convscope.inspect.detections import detect
from tests.conftest import assert_unchanged, snapshot
from tests.helpers import calibrated, small_detr
from tests.torchvision_cpu import torchvision_detection

SIZE = 128


class _CellDetector(nn.Module):
    """A 4x4 grid of 8x8 cells on a 32x32 image, one candidate box per cell, in the packed form
    (:mod:`convscope.models.detectors`): objectness ``sigmoid(a . (cell mean - 1/2) + 1)`` and two
    classes ``softmax(W cell mean)``; so box ``k``'s score reads the pixels of its own cell and no
    other."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.objectness = nn.Parameter(torch.randn(3, generator=generator) * 4)
        self.classes = nn.Parameter(torch.randn(2, 3, generator=generator) * 4)
        top, left = torch.meshgrid(torch.arange(4.0) * 8, torch.arange(4.0) * 8, indexing="ij")
        self.register_buffer("boxes", torch.stack([left, top, left + 8, top + 8], -1).view(16, 4))

    def forward(self, x):
        cells = F.avg_pool2d(x, 8).flatten(2).transpose(1, 2)  # (B, 16, 3)
        objectness = torch.sigmoid((cells - 0.5) @ self.objectness + 1)
        classes = (cells @ self.classes.T).softmax(-1)
        return torch.cat([self.boxes.expand(len(x), -1, -1), objectness[..., None], classes], -1)


def cell_detector() -> cs.Model:
    """The cell detector as a command-line factory: ``--model tests.attribute.test_detection:cell_detector``."""
    return cs.Model(_CellDetector(), name="cells", input_size=(32, 32), task="detection")


def _cells(count: int = 1, seed: int = 0) -> tuple[cs.Model, torch.Tensor]:
    x = torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return cell_detector(), x


@pytest.fixture(scope="module")
def ssd() -> cs.Model:
    detection = torchvision_detection()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3,
                                                      score_thresh=0.3, nms_thresh=0.5, detections_per_img=20)
    net.transform.fixed_size = (SIZE, SIZE)
    return calibrated(net, SIZE)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return cs.sample_image("astronaut", size=SIZE)


def test_a_box_score_reads_only_its_own_cell_on_a_detector_whose_answer_is_known():
    model, x = _cells()
    before = snapshot(model.net)
    found = detect(model, x)[0]
    k = 2
    assert len(found) > k
    chosen = found[k]
    gradient = attribute(model, x, objective_for(model, x, f"box:{k}"))[0]
    top, left = int(chosen.box[1]), int(chosen.box[0])
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[top:top + 8, left:left + 8] = True
    assert float(gradient[:, ~inside].abs().max()) == 0 and float(gradient[:, inside].abs().min()) > 0
    net = model.net  # by hand: d score / d pixel = d score / d cell mean / 64, the same in every pixel of the cell
    mean = x[0, :, top:top + 8, left:left + 8].mean((1, 2)).clone().requires_grad_(True)
    score = torch.sigmoid((mean - 0.5) @ net.objectness + 1) * (net.classes @ mean).softmax(-1)[chosen.index]
    (expected,) = torch.autograd.grad(score, mean)
    assert torch.allclose(gradient[:, top, left], expected / 64, rtol=1e-5, atol=1e-9)
    assert abs(float(score.detach()) - chosen.score) < 1e-6
    assert_unchanged(before, model.net)


def test_d_rise_equals_the_similarity_written_out_mask_by_mask():
    model, x = _cells()
    chosen = detect(model, x)[0][0]
    objective = objective_for(model, x, "box:0", perturbation=True)
    count = 24
    got = rise(model, x, objective, masks=count, cells=4, seed=3)[0]
    masks = rise_masks(count, (32, 32), cells=4, seed=3)
    reference = torch.tensor(chosen.box)
    scores = []
    for mask in masks:  # D-RISE (Petsiuk et al. 2021): the best match of IoU x cosine x objectness
        with torch.no_grad():
            candidates = model.net(x * mask)[0]
        best = 0.0
        for row in candidates.tolist():
            x1, y1, x2, y2 = row[:4]
            inter = max(0.0, min(x2, chosen.box[2]) - max(x1, chosen.box[0])) * \
                max(0.0, min(y2, chosen.box[3]) - max(y1, chosen.box[1]))
            union = (x2 - x1) * (y2 - y1) + float((reference[2:] - reference[:2]).prod()) - inter
            probabilities = torch.tensor(row[5:])
            cosine = float(probabilities[chosen.index] / probabilities.norm())
            best = max(best, inter / union * cosine * row[4])
        scores.append(best)
    scores = torch.tensor(scores)
    expected = ((scores - scores.mean()).view(-1, 1, 1) * masks[:, 0]).sum(0) / (count * 0.5)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_several_boxes_in_a_batch_equal_the_same_boxes_one_at_a_time():
    model, x = _cells(2)
    together = attribute(model, x, objective_for(model, x, "box:1"))
    alone = torch.cat([attribute(model, x[i:i + 1], objective_for(model, x[i:i + 1], "box:1")) for i in range(2)])
    assert torch.allclose(together, alone, rtol=1e-6, atol=1e-9)


def test_bad_box_targets_get_one_line():
    model, x = _cells()
    count = len(detect(model, x)[0])
    with pytest.raises(cs.ConvscopeError, match=rf"image 0 has {count} boxes above score 0.3 .*not a box 99$"):
        objective_for(model, x, "box:99")
    with pytest.raises(cs.ConvscopeError, match="unknown box part 'middle'; accepted: score, class"):
        objective_for(model, x, "box:0:middle")
    with pytest.raises(cs.ConvscopeError, match="box:K needs a box number"):
        objective_for(model, x, "box:first")
    classifier = cs.Model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), input_size=(32, 32))
    with pytest.raises(cs.ConvscopeError, match="is not a detector known to convscope"):
        objective_for(classifier, x, "box:0")


def test_ssd_boxes_equal_torchvision_detections(ssd, photo):
    found = detect(ssd, photo)[0]
    with torch.no_grad():
        (own,) = ssd.net(photo)
    assert len(found) == len(own["boxes"]) > 3
    assert torch.allclose(torch.tensor([d.box for d in found]), own["boxes"], rtol=1e-5, atol=1e-4)
    assert torch.allclose(torch.tensor([d.score for d in found]), own["scores"], rtol=1e-5)
    assert [d.index for d in found] == own["labels"].tolist()


@pytest.mark.parametrize("k", [0, 2])
def test_ssd_box_gradient_equals_autograd_of_torchvision_score(ssd, photo, k):
    before = snapshot(ssd.net)
    got = cs.saliency(ssd, photo, f"box:{k}").raw[0]
    x = photo.clone().requires_grad_(True)
    (own,) = ssd.net(x)
    (expected,) = torch.autograd.grad(own["scores"][k], x)
    scale = float(expected.abs().max())
    assert scale > 0 and float((got - expected[0]).abs().max()) < 1e-3 * scale
    assert_unchanged(before, ssd.net)


def test_grad_cam_of_a_box_equals_pytorch_grad_cam_on_torchvision_output(ssd, photo):
    cam_lib = pytest.importorskip("pytorch_grad_cam")
    layer = "backbone.features.0.13"
    got = cs.saliency(ssd, photo, "box:0", method="gradcam", layer=layer).map[0]
    with torch.no_grad():
        (own,) = ssd.net(photo)
    box = own["boxes"][0]

    def score_of_the_box(output):  # the same detection's score, found again by its box
        return output["scores"][(output["boxes"] - box).abs().sum(1).argmin()]
    with cam_lib.GradCAM(model=ssd.net, target_layers=[dict(ssd.net.named_modules())[layer]]) as cam:
        reference = torch.from_numpy(cam(photo, targets=[score_of_the_box]))[0]
    normalize = lambda m: (m - m.min()) / (m.max() - m.min())  # noqa: E731 - the library scales to [0, 1]
    assert float(reference.std()) > 0.05 and float((normalize(got) - reference).abs().max()) < 1e-3


def test_grad_cam_of_a_faster_rcnn_box_equals_pytorch_grad_cam_on_torchvision_output(photo):
    """Two stages: the box is found again among the proposals (one foreground class: convscope lists
    each proposal once, with its most likely class and that class's box). pytorch-grad-cam's own
    FasterRCNNBoxScoreTarget adds the box's IoU with itself to its score; that IoU's gradient at
    the detected box is a kink (the tie of min and max), decided by the last bits of arithmetic, so
    the reference reads the score alone, like the ``score`` part."""
    cam_lib = pytest.importorskip("pytorch_grad_cam")
    detection = torchvision_detection()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=2, rpn_pre_nms_top_n_test=150,
            rpn_post_nms_top_n_test=60, box_score_thresh=0.3, box_detections_per_img=20)
    net.transform.min_size, net.transform.max_size = (SIZE,), SIZE
    model = calibrated(net, SIZE)
    layer = "backbone.body.16"
    found = detect(model, photo)[0]
    with torch.no_grad():
        (own,) = net(photo)
    assert torch.allclose(torch.tensor([d.box for d in found]), own["boxes"], rtol=1e-5, atol=1e-4)
    got = cs.saliency(model, photo, "box:1", method="gradcam", layer=layer).map[0]

    def score_of_the_box(output):  # the same detection's score, found again by its box and class
        distance = (output["boxes"] - own["boxes"][1]).abs().sum(1) + 1e3 * (output["labels"] != own["labels"][1])
        return output["scores"][distance.argmin()]
    with cam_lib.GradCAM(model=net, target_layers=[dict(net.named_modules())[layer]]) as cam:
        reference = torch.from_numpy(cam(photo, targets=[score_of_the_box]))[0]
    normalize = lambda m: (m - m.min()) / (m.max() - m.min())  # noqa: E731 - the library scales to [0, 1]
    assert float(reference.std()) > 0.05 and float((normalize(got) - reference).abs().max()) < 1e-3


def test_occluding_a_box_changes_only_where_the_patch_covers_its_cell():
    """D-RISE's similarity on the cell detector reads only the box's own cell (the other cells'
    boxes do not overlap it), so only patches over that cell change it."""
    model, x = _cells()
    chosen = detect(model, x)[0][0]
    result = occlusion(model, x, "box:0", patch=4, stride=4, fill="zero", mode="exact")
    left, top = int(chosen.box[0]) // 4, int(chosen.box[1]) // 4
    changed = (result.probabilities[0] - result.baseline[0]).abs() > 1e-7
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[top:top + 2, left:left + 2] = True
    assert torch.equal(changed, inside)
    with torch.no_grad():
        row = model(x)[0, chosen.candidate]
    expected = float(row[4] * row[5 + chosen.index] / row[5:].norm())  # IoU 1 x cosine with one-hot x objectness
    assert abs(float(result.baseline[0]) - expected) < 1e-6


@pytest.fixture(scope="module")
def yolo(tmp_path_factory) -> cs.Model:
    """Ultralytics' YOLOv8n from its yaml, random weights (an optional test-only dependency: AGPL)."""
    import os
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
    torchvision_detection()  # its NMS calls torchvision's
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = tasks.DetectionModel("yolov8n.yaml", nc=3, verbose=False)
        with torch.no_grad():
            for branch in net.model[-1].cv3:  # its prior: class probabilities near 1% (few objects per image)
                branch[-1].bias.zero_()
    return calibrated(net, SIZE)


def test_yolo_boxes_equal_ultralytics_nms_and_a_box_gradient_equals_autograd_of_its_score(yolo, photo):
    from ultralytics.utils.nms import non_max_suppression
    found = detect(yolo, photo)[0]
    with torch.no_grad():
        (own,) = non_max_suppression(yolo.net(photo), conf_thres=0.3, iou_thres=0.5, max_det=20)
    assert len(found) == len(own) > 3
    assert torch.allclose(torch.tensor([d.box for d in found]), own[:, :4], rtol=1e-5, atol=1e-3)
    assert torch.allclose(torch.tensor([d.score for d in found]), own[:, 4], rtol=1e-5)
    assert [d.index for d in found] == own[:, 5].long().tolist()
    got = cs.saliency(yolo, photo, "box:1").raw[0]
    x = photo.clone().requires_grad_(True)
    grid = yolo.net(x)[0]  # (1, 4 + classes, candidates): its score is the class sigmoid there
    (expected,) = torch.autograd.grad(grid[0, 4 + found[1].index, found[1].candidate], x)
    scale = float(expected.abs().max())
    assert scale > 0 and float((got - expected[0]).abs().max()) < 1e-3 * scale


def test_detr_queries_equal_hugging_face_post_processing_and_a_box_gradient_its_probability(photo):
    transformers = pytest.importorskip("transformers")
    net = small_detr(transformers)
    model = calibrated(net, SIZE)
    found = detect(model, photo)[0]
    processor = transformers.DetrImageProcessor()
    with torch.no_grad():
        (own,) = processor.post_process_object_detection(net(photo), threshold=0.3, target_sizes=[(SIZE, SIZE)])
    order = own["scores"].argsort(descending=True)  # queries in order; convscope lists best first, unsuppressed
    assert len(found) == len(order) > 3
    assert torch.allclose(torch.tensor([d.box for d in found]), own["boxes"][order], rtol=1e-5, atol=1e-3)
    assert torch.allclose(torch.tensor([d.score for d in found]), own["scores"][order], rtol=1e-5)
    got = cs.saliency(model, photo, "box:0").raw[0]
    x = photo.clone().requires_grad_(True)
    probabilities = net(x).logits.softmax(-1)
    (expected,) = torch.autograd.grad(probabilities[0, found[0].candidate, found[0].index], x)
    scale = float(expected.abs().max())
    assert scale > 0 and float((got - expected[0]).abs().max()) < 1e-3 * scale
