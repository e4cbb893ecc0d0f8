"""Runs the tour's shots with a progress bar and writes the gallery, also when interrupted."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from convscope.core.render import Picture
from convscope.models import Model, load_model
from convscope.tour.gallery import Entry, Gallery


@dataclass(frozen=True)
class Shot:
    """One picture to make: its section, title and the function that makes it; ``link``: a page
    the shot writes beside the tour (relative to its folder), linked from its card."""

    section: str
    title: str
    make: Callable[[], Picture]
    link: str | None = None


@dataclass
class TourContext:
    """What every section needs: the model, the output folder and the settings."""

    model: Model
    folder: Path
    full: bool = False


def run_tour(folder: str | Path = "tour", *, model: Model | str = "efficientnet_lite0", full: bool = False,
             device: str = "auto", progress: bool = True) -> Path:
    """Makes every picture of every section and writes ``folder/index.html``.

    Args:
        folder: output folder, created if missing.
        model: the model to tour (a Model or a spec for :func:`load_model`).
        full: use the papers' settings (slower) instead of the quick defaults.
        device: where to run.
        progress: show a progress bar.

    Returns:
        The path of ``index.html``. On Ctrl-C the gallery of the pictures made so far is
        written, then ``KeyboardInterrupt`` is raised again.
    """
    from convscope.tour.sections import all_shots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("[0-9][0-9][0-9]-*.png"):  # pictures of an earlier tour
        old.unlink()
    context = TourContext(model if isinstance(model, Model) else load_model(model, device=device), folder, full)
    gallery = Gallery(folder, f"convscope tour of {context.model.name}")
    started = time.perf_counter()
    try:
        for shot in tqdm(all_shots(context), desc="tour", unit="picture", disable=not progress):
            gallery.add(_take(shot, folder, len(gallery.entries)))
    except KeyboardInterrupt:
        gallery.notes.append("Interrupted: the gallery shows the pictures made before the interruption.")
        gallery.write()
        raise
    gallery.notes.append(f"Made in {time.perf_counter() - started:.1f} s on {context.model.device}"
                         f"{' with the papers settings' if full else ''}.")
    return gallery.write()


def _take(shot: Shot, folder: Path, number: int) -> Entry:
    started = time.perf_counter()
    result = shot.make()
    seconds = time.perf_counter() - started
    slug = re.sub(r"[^a-z0-9]+", "-", shot.title.lower().replace("++", " plus plus")).strip("-")[:60]
    file = f"{number:03d}-{slug}.png"
    result.save(folder / file)
    return Entry(shot.section, shot.title, file, result.caption, result.numbers, seconds, shot.link)
