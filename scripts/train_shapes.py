"""Trains the shapes detector's and segmenter's heads on the default model's frozen trunk and writes
their weights (:mod:`convscope.models.shapes`, scenes from :mod:`convscope.data.scenes`).

Run: python scripts/train_shapes.py   (a few minutes on a 2-core CPU)
Writes src/convscope/models/shapes_detector.pt and shapes_segmenter.pt (float32 state dicts of the
heads alone) and prints held-out precision and recall of the boxes (IoU 0.5) and the segmenter's
mean IoU. Scenes 0..TRAIN-1 train, TEST_SEED.. test (the tour draws its scenes elsewhere); seeds
are fixed, so the result is reproducible on one machine.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from convscope.core.boxes import iou
from convscope.data.scenes import SHAPES, scene
from convscope.inspect.detections import detect
from convscope.models.builtin import shapes_model
from convscope.models.shapes import STRIDE, cell_centres, heads

FOLDER = Path(__file__).resolve().parents[1] / "src" / "convscope" / "models"
TRAIN, TEST, TEST_SEED, SIZE = 2000, 200, 100_000, 224
EPOCHS, BATCH, LR = 40, 64, 2e-3
#: A cell is a positive of a shape when its centre lies in the box within this many pixels of the box's centre.
CENTRE_RADIUS = 1.5 * STRIDE


def features(model, seeds: range) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The trunk's fine and coarse features of each scene, and the scenes."""
    scenes = [scene(seed, size=SIZE) for seed in seeds]
    fine, coarse = [], []
    with torch.no_grad():
        for start in range(0, len(scenes), 32):
            images = torch.cat([s.image for s in scenes[start:start + 32]])
            a, b = model.net.backbone(model.normalize(images))
            fine.append(a)
            coarse.append(b)
    return torch.cat(fine), torch.cat(coarse), scenes


def detection_targets(scenes: list, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per scene and cell: positive or not ``(S, N)``, class ``(S, N)``, log distances ``(S, N, 4)``."""
    centres = cell_centres(grid)
    positive = torch.zeros(len(scenes), len(centres), dtype=torch.bool)
    classes = torch.zeros(len(scenes), len(centres), dtype=torch.long)
    distances = torch.zeros(len(scenes), len(centres), 4)
    for i, s in enumerate(scenes):
        order = ((s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1])).argsort(descending=True)
        for k in order.tolist():  # smaller shapes last: they win shared cells
            x1, y1, x2, y2 = s.boxes[k].tolist()
            near = ((centres[:, 0] - (x1 + x2) / 2).abs() <= CENTRE_RADIUS) & \
                   ((centres[:, 1] - (y1 + y2) / 2).abs() <= CENTRE_RADIUS)
            inside = (centres[:, 0] > x1) & (centres[:, 0] < x2) & (centres[:, 1] > y1) & (centres[:, 1] < y2)
            chosen = near & inside
            positive[i, chosen], classes[i, chosen] = True, int(s.classes[k])
            sides = torch.stack([centres[:, 0] - x1, centres[:, 1] - y1, x2 - centres[:, 0], y2 - centres[:, 1]], -1)
            distances[i, chosen] = (sides[chosen] / STRIDE).log()
    return positive, classes, distances


def train_detector(model, coarse: torch.Tensor, scenes: list) -> None:
    net = model.net
    positive, classes, distances = detection_targets(scenes, coarse.shape[-2:])
    optimizer = torch.optim.AdamW(net.head.parameters(), lr=LR, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=EPOCHS * -(-len(scenes) // BATCH))
    for epoch in range(EPOCHS):
        for batch in torch.randperm(len(scenes)).split(BATCH):
            raw = net.raw(coarse[batch])
            wanted = positive[batch]
            objectness = F.binary_cross_entropy_with_logits(raw[..., 0], wanted.float(), pos_weight=torch.tensor(4.0))
            loss = objectness
            if wanted.any():
                loss = loss + F.cross_entropy(raw[..., 1:-4][wanted], classes[batch][wanted]) \
                    + F.smooth_l1_loss(raw[..., -4:][wanted], distances[batch][wanted], beta=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch % 10 == 9:
            print(f"detector epoch {epoch + 1}: loss {loss.item():.3f}")


def train_segmenter(model, fine: torch.Tensor, coarse: torch.Tensor, scenes: list) -> None:
    net = model.net
    labels = torch.stack([s.labels for s in scenes])
    parameters = [p for name, p in net.named_parameters() if not name.startswith("backbone.")]
    optimizer = torch.optim.AdamW(parameters, lr=LR, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=EPOCHS * -(-len(scenes) // BATCH))
    for epoch in range(EPOCHS):
        for batch in torch.randperm(len(scenes)).split(BATCH):
            logits = F.interpolate(net.logits(fine[batch], coarse[batch]), size=(SIZE, SIZE), mode="bilinear",
                                   align_corners=False)
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch % 10 == 9:
            print(f"segmenter epoch {epoch + 1}: loss {loss.item():.3f}")


def detector_scores(model, scenes: list) -> tuple[float, float]:
    """Precision and recall at IoU 0.5 with the right class, over ``scenes``."""
    hits = found = wanted = 0
    for start in range(0, len(scenes), 32):
        part = scenes[start:start + 32]
        for s, boxes in zip(part, detect(model, torch.cat([p.image for p in part]))):
            found, wanted = found + len(boxes), wanted + len(s.boxes)
            matched = set()
            for d in boxes:
                overlaps = iou(torch.tensor(d.box).view(1, 4), s.boxes).view(-1)
                for k in overlaps.argsort(descending=True).tolist():
                    if overlaps[k] >= 0.5 and k not in matched and int(s.classes[k]) == d.index:
                        matched.add(k)
                        hits += 1
                        break
    return hits / max(found, 1), hits / max(wanted, 1)


def segmenter_iou(model, scenes: list) -> float:
    """Mean over the classes (background included) of the intersection over union of the pixels."""
    inter, union = torch.zeros(1 + len(SHAPES)), torch.zeros(1 + len(SHAPES))
    with torch.no_grad():
        for start in range(0, len(scenes), 32):
            part = scenes[start:start + 32]
            predicted = model(torch.cat([p.image for p in part])).argmax(1)
            truth = torch.stack([p.labels for p in part])
            for c in range(1 + len(SHAPES)):
                inter[c] += ((predicted == c) & (truth == c)).sum()
                union[c] += ((predicted == c) | (truth == c)).sum()
    return float((inter / union).mean())


def main() -> None:
    torch.manual_seed(0)
    detector, segmenter = shapes_model("detector", trained=False), shapes_model("segmenter", trained=False)
    fine, coarse, scenes = features(detector, range(TRAIN))
    tests = [scene(seed, size=SIZE) for seed in range(TEST_SEED, TEST_SEED + TEST)]
    train_detector(detector, coarse, scenes)
    train_segmenter(segmenter, fine, coarse, scenes)
    detector.net.eval(), segmenter.net.eval()
    precision, recall = detector_scores(detector, tests)
    print(f"held-out boxes: precision {precision:.3f}, recall {recall:.3f} (IoU 0.5, right class, score 0.3)")
    print(f"held-out segmentation: mean IoU {segmenter_iou(segmenter, tests):.3f} over background and "
          f"{len(SHAPES)} shapes")
    for name, model in (("shapes_detector", detector), ("shapes_segmenter", segmenter)):
        path = FOLDER / f"{name}.pt"
        torch.save(heads(model.net), path)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
