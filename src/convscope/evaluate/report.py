"""What an evaluation found: per-image values, the methods x metrics table with each metric's
better direction, the curves, and pictures of both."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from convscope.core.render import Picture, figure_picture, overlay, save_json
from convscope.evaluate.curves import Curve
from convscope.evaluate.metrics import METRICS


@dataclass
class Report:
    """Methods x metrics on a batch.

    Attributes:
        model: the model's name.
        images: ``(B, C, H, W)`` the images, on the CPU.
        classes: ``(B,)`` the explained classes, or None for a task's target; labels: each image's
            class name or target.
        metrics: the metrics' names, in order.
        maps: method -> ``(B, H, W)`` maps.
        values: metric -> method -> ``(B,)`` per-image values.
        curves: metric -> method -> :class:`Curve` (for the curve metrics).
        score: what the perturbation curves read.
    """

    model: str
    images: torch.Tensor
    classes: torch.Tensor | None
    labels: list[str]
    metrics: list[str]
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    curves: dict[str, dict[str, Curve]] = field(default_factory=dict)
    score: str = "class probability"

    @property
    def methods(self) -> list[str]:
        return list(self.maps)

    def add(self, metric: str, method: str, values: torch.Tensor, curve: Curve | None) -> None:
        self.values.setdefault(metric, {})[method] = values.detach().cpu().float()
        if curve is not None:
            self.curves.setdefault(metric, {})[method] = curve

    def table(self) -> dict[str, dict[str, float]]:
        """method -> metric -> the mean over the images."""
        return {method: {metric: float(self.values[metric][method].mean()) for metric in self.metrics}
                for method in self.methods}

    def ranking(self, metric: str) -> list[str]:
        """The methods, best first by ``metric``."""
        means = {method: float(self.values[metric][method].mean()) for method in self.methods}
        return sorted(means, key=means.get, reverse=METRICS[metric].better == "higher")

    def markdown(self) -> str:
        """The table as Markdown: one row per method, each cell ``mean (rank)``, arrows saying which
        direction is better, and one line per metric on what it measures."""
        head = "| method | " + " | ".join(f"{m} {'↑' if METRICS[m].better == 'higher' else '↓'}"
                                         for m in self.metrics) + " |"
        rule = "|---" * (len(self.metrics) + 1) + "|"
        ranks = {metric: self.ranking(metric) for metric in self.metrics}
        table = self.table()
        rows = ["| " + method + " | " + " | ".join(f"{table[method][m]:.3f} ({ranks[m].index(method) + 1})"
                                                   for m in self.metrics) + " |" for method in self.methods]
        notes = [f"- **{m}** ({METRICS[m].better} is better): {METRICS[m].measures}." for m in self.metrics]
        return "\n".join([head, rule, *rows, "", *notes])

    def as_dict(self) -> dict:
        """JSON-friendly: the table, the rankings, per-image values and the mean curves."""
        return {
            "model": self.model, "images": len(self.images),
            **({"classes": [{"index": int(c), "label": label} for c, label in zip(self.classes, self.labels)]}
               if self.classes is not None else {"targets": self.labels}),
            "score": self.score,
            "metrics": {m: {"better": METRICS[m].better, "measures": METRICS[m].measures} for m in self.metrics},
            "table": self.table(), "ranking": {m: self.ranking(m) for m in self.metrics},
            "per_image": {m: {method: v.tolist() for method, v in by.items()} for m, by in self.values.items()},
            "curves": {m: {method: {"fractions": c.fractions.tolist(), "mean": c.scores.mean(0).tolist()}
                           for method, c in by.items()} for m, by in self.curves.items()},
        }

    def table_picture(self) -> Picture:
        """The table as a picture: each cell the mean and the method's rank, the best of each metric
        in green, and under it one line per metric on what it measures and which way is better."""
        import textwrap

        import matplotlib.pyplot as plt

        table, ranks = self.table(), {metric: self.ranking(metric) for metric in self.metrics}
        figure_width = 1.6 + 1.05 * len(self.metrics)  # inches; the notes wrap at about 18 characters each
        cells = [[f"{table[method][m]:.3f} ({ranks[m].index(method) + 1})" for m in self.metrics]
                 for method in self.methods]
        notes = [line for m in self.metrics for line in textwrap.wrap(
            f"{m} ({'higher' if METRICS[m].better == 'higher' else 'lower'} is better): {METRICS[m].measures}",
            width=int(18 * figure_width), subsequent_indent="    ")]
        width = figure_width
        table_height, notes_height = 0.25 * (len(self.methods) + 1) + 0.1, 0.12 * len(notes) + 0.15
        figure = plt.figure(figsize=(width, table_height + notes_height), dpi=110)
        height = table_height + notes_height
        axes = figure.add_axes((0.14, notes_height / height, 0.85, table_height / height))
        axes.axis("off")
        shown = axes.table(cellText=cells, rowLabels=self.methods, bbox=(0, 0, 1, 1), cellLoc="center",
                           colLabels=[f"{m} {'↑' if METRICS[m].better == 'higher' else '↓'}" for m in self.metrics])
        shown.auto_set_font_size(False)
        shown.set_fontsize(7)
        for column, metric in enumerate(self.metrics):
            shown[self.methods.index(ranks[metric][0]) + 1, column].set_facecolor("#cdeccd")
        figure.text(0.01, 0.1 / height, "\n".join(notes), fontsize=6, va="bottom", ha="left")
        caption = (f"{len(self.methods)} methods x {len(self.metrics)} metrics on {len(self.images)} image(s) of "
                   f"{self.model}: mean (rank), best in green" +
                   (f"; the curves read {self.score}" if self.classes is None else ""))
        return figure_picture(figure, caption)

    def curves_picture(self) -> Picture:
        """One panel per curve metric: each method's mean curve, its area in the legend."""
        import matplotlib.pyplot as plt

        names = list(self.curves)
        columns = min(3, max(1, len(names)))
        rows = -(-max(1, len(names)) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
        for axis in axes.flat[len(names):]:
            axis.axis("off")
        for axis, metric in zip(axes.flat, names):
            for method, curve in self.curves[metric].items():
                area = float(self.values[metric][method].mean())
                axis.plot(curve.fractions, curve.scores.mean(0), label=f"{method} ({area:.3f})")
            better = METRICS[metric].better
            axis.set_title(f"{metric} ({better} area is better)", fontsize=9)
            axis.set_xlabel("fraction changed" if metric != "mprt" else "share of layers randomized", fontsize=8)
            axis.set_ylabel("rank correlation" if metric == "mprt" else _short(self.score), fontsize=8)
            axis.legend(fontsize=7)
        figure.tight_layout()
        return figure_picture(figure, f"{', '.join(names)} curves, mean over {len(self.images)} image(s)")

    def maps_picture(self, size: int = 112) -> Picture:
        """Rows: the images, then each method's maps over them (named at the left); columns: the images,
        titled with the explained class."""
        import matplotlib.pyplot as plt

        images = F.interpolate(self.images[:, :3].expand(-1, 3, -1, -1), size=(size, size), mode="bilinear",
                               align_corners=False).clamp(0, 1)
        rows = [("image", list(images))]
        for method in self.methods:
            maps = F.interpolate(self.maps[method][:, None], size=(size, size), mode="bilinear",
                                 align_corners=False)[:, 0]
            rows.append((method, [overlay(image, heat, vmin=0.0, vmax=float(heat.flatten().quantile(0.99)) or 1.0)
                                  for image, heat in zip(images, maps)]))
        figure, axes = plt.subplots(len(rows), len(images), figsize=(1.3 * len(images) + 1.2, 1.3 * len(rows)),
                                    squeeze=False)
        for r, (name, tiles) in enumerate(rows):
            for c, tile in enumerate(tiles):
                axis = axes[r][c]
                axis.imshow(tile.permute(1, 2, 0).numpy())
                axis.set_xticks([]), axis.set_yticks([])
                if r == 0:
                    axis.set_title(self.labels[c][:18], fontsize=7)
                if c == 0:
                    axis.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        figure.tight_layout(pad=0.3)
        return figure_picture(figure, f"{len(self.methods)} method(s) on {len(images)} image(s)")

    def save(self, folder: str | Path) -> list[Path]:
        """Writes ``report.json``, ``table.md``, ``maps.png`` and (with curve metrics) ``curves.png``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [save_json(folder / "report.json", self.as_dict())]
        (folder / "table.md").write_text(self.markdown() + "\n")
        written += [folder / "table.md", self.maps_picture().save(folder / "maps.png")]
        if self.curves:
            written.append(self.curves_picture().save(folder / "curves.png"))
        return written


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def with_curves(shown: Picture, curves: dict[str, Curve], index: int = 0) -> Picture:
    """``shown`` (a map's picture) beside the curves of its image ``index``, each with its area
    and which direction is better; the caption names them."""
    import matplotlib.pyplot as plt

    height, width = shown.array.shape[:2]
    figure = plt.figure(figsize=((width + 330) / 100, max(height, 250) / 100), dpi=100)
    picture_axes = figure.add_axes((0, 0, width / (width + 330), 1))
    picture_axes.imshow(shown.array)
    picture_axes.axis("off")
    axes = figure.add_axes(((width + 55) / (width + 330), 0.18, 250 / (width + 330), 0.72))
    areas = {}
    for metric, curve in curves.items():
        areas[metric] = float(curve.auc[index])
        axes.plot(curve.fractions, curve.scores[index], label=f"{metric} {areas[metric]:.3f} "
                                                              f"({METRICS[metric].better} is better)")
    axes.set_xlabel("fraction of pixels changed", fontsize=8)
    axes.set_ylabel("class probability", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7)
    caption = shown.caption + "; " + ", ".join(f"{metric} area {area:.3f}" for metric, area in areas.items())
    return figure_picture(figure, caption, **shown.numbers, **{f"{m}_auc": a for m, a in areas.items()})
