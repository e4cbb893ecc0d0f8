"""Image datasets: a folder, a list file, scikit-learn's digits, augmented sample photos.

Every dataset reads one image at a time, so a dataset of any size streams in bounded memory.
``read(i)`` returns ``(C, H, W)`` float pixels in [0, 1] at the image's own size (C = 1 or 3);
``label(i)`` is a class index, or -1 when the dataset has no labels. An unreadable file raises
:class:`ConvscopeError`, which the loader records and skips.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from convscope.core.images import IMAGE_SUFFIXES, load_image, resize
from convscope.errors import ConvscopeError

#: Datasets with more items than this are refused (a typo such as digits:10000000000).
MAX_ITEMS = 10_000_000
SPECS = "a folder, a list file (.txt, .csv or .lst), 'digits', 'digits:N' or 'photos:N'"


class ImageDataset(Dataset):
    """Base of the datasets: ``spec`` names it, ``classes`` are the label names (or None)."""

    spec: str = ""
    classes: list[str] | None = None

    def read(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def label(self, index: int) -> int:
        return -1

    def describe(self, index: int) -> str:
        """A name for item ``index`` that a person can find again (a path, or ``digits #12``)."""
        return f"{self.spec} #{index}"

    @property
    def meaning(self) -> str:
        """What ``spec`` stands for, in words (pages show it beside the spec)."""
        return f"{len(self)} images from {self.spec}"


class ImageFolder(ImageDataset):
    """Every image file under ``root``, recursively, sorted by path; hidden files are left out.

    When every image lies in a subfolder, the first-level subfolders are the classes.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.spec = str(self.root)
        self.files = sorted(path.relative_to(self.root) for path in self.root.rglob("*")
                            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                            and not any(part.startswith(".") for part in path.relative_to(self.root).parts))
        if not self.files:
            raise ConvscopeError(f"{root}: no images in this folder or below it "
                                 f"(accepted endings: {', '.join(IMAGE_SUFFIXES)})")
        _check_count(self.spec, len(self.files))
        if all(len(path.parts) > 1 for path in self.files):
            self.classes = sorted({path.parts[0] for path in self.files})
            self._labels = [self.classes.index(path.parts[0]) for path in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> torch.Tensor:
        return load_image(self.root / self.files[index])[0]

    def label(self, index: int) -> int:
        return self._labels[index] if self.classes else -1

    def describe(self, index: int) -> str:
        return str(self.root / self.files[index])


class ImageList(ImageDataset):
    """A text file with one image path per line, optionally followed by a label (class name).

    Fields are separated by a comma, a tab or spaces; relative paths are taken from the list
    file's folder; blank lines and lines starting with ``#`` are skipped. Missing files are
    reported when read, like corrupt ones.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.spec = str(self.path)
        rows = [_fields(line) for line in self.path.read_text(errors="replace").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        if not rows:
            raise ConvscopeError(f"{path}: the list file names no images; expected one path per line")
        _check_count(self.spec, len(rows))
        self.files = [self.path.parent / row[0] for row in rows]
        if all(len(row) > 1 for row in rows):
            self.classes = sorted({row[1] for row in rows})
            self._labels = [self.classes.index(row[1]) for row in rows]

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> torch.Tensor:
        return load_image(self.files[index])[0]

    def label(self, index: int) -> int:
        return self._labels[index] if self.classes else -1

    def describe(self, index: int) -> str:
        return str(self.files[index])


def _fields(line: str) -> list[str]:
    for separator in (",", "\t"):
        if separator in line:
            return [field.strip() for field in line.split(separator)]
    return line.split(maxsplit=1)


class Digits(ImageDataset):
    """scikit-learn's 1797 8x8 digits; with ``count`` > 1797, item ``i`` beyond them is digit
    ``i % 1797`` shifted by up to one pixel and with noise added, seeded by ``i`` (synthetic scale)."""

    classes = [str(d) for d in range(10)]

    @property
    def meaning(self) -> str:
        extra = f", then shifted noisy copies up to {self.count}" if self.count > 1797 else ""
        return f"{min(self.count, 1797)} of scikit-learn's 8x8 handwritten digits{extra}"

    def __init__(self, count: int | None = None) -> None:
        self.count = count or 1797
        self.spec = "digits" if count is None else f"digits:{count}"
        _check_count(self.spec, self.count)

    def __len__(self) -> int:
        return self.count

    def read(self, index: int) -> torch.Tensor:
        images, _ = _digits()
        image = images[index % len(images)]
        if index < len(images):
            return image
        rng = np.random.default_rng(index)
        shift = tuple(int(s) for s in rng.integers(-1, 2, size=2))
        noise = torch.from_numpy(rng.normal(0, 0.05, image.shape).astype(np.float32))
        return (torch.roll(image, shift, dims=(-2, -1)) + noise).clamp(0, 1)

    def label(self, index: int) -> int:
        _, labels = _digits()
        return int(labels[index % len(labels)])


@cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from convscope.models.digits import digits_dataset

    return digits_dataset()


class AugmentedPhotos(ImageDataset):
    """``count`` random crops of the bundled sample photos (cat, coffee, astronaut, rocket):
    item ``i`` is a crop of photo ``i % 4`` covering 30-100% of its shorter side, maybe
    mirrored, with its brightness scaled by 0.8-1.2, seeded by ``i``; the photo is its label."""

    @property
    def meaning(self) -> str:
        return (f"{self.count} random crops of the {len(self.classes)} bundled photos ({', '.join(self.classes)}), "
                "some mirrored or brightened")

    def __init__(self, count: int = 512, *, size: int = 256) -> None:
        from convscope.samples import SAMPLES

        self.count, self.size = count, size
        self.spec = f"photos:{count}"
        self.classes = list(SAMPLES)
        _check_count(self.spec, count)

    def __len__(self) -> int:
        return self.count

    def read(self, index: int) -> torch.Tensor:
        photo = _photo(self.classes[index % len(self.classes)])
        rng = np.random.default_rng(index)
        height, width = photo.shape[-2:]
        side = int(min(height, width) * rng.uniform(0.3, 1.0))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = resize(photo[None, :, top:top + side, left:left + side], (self.size, self.size))[0]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        return (crop * rng.uniform(0.8, 1.2)).clamp(0, 1)

    def label(self, index: int) -> int:
        return index % len(self.classes)


@cache
def _photo(name: str) -> torch.Tensor:
    from convscope.samples import sample_image

    return sample_image(name)[0]


def open_dataset(spec: str | Path | ImageDataset) -> ImageDataset:
    """A dataset from its command-line name: a folder, a list file, ``digits[:N]`` or ``photos[:N]``.

    Raises:
        ConvscopeError: the name is none of those, or names nothing usable.
    """
    if isinstance(spec, ImageDataset):
        return spec
    text = str(spec)
    name, _, count = text.partition(":")
    if name in ("digits", "photos") and not Path(text).exists():
        number = _count(text, count) if count else None
        return Digits(number) if name == "digits" else AugmentedPhotos(number or 512)
    path = Path(text)
    if path.is_dir():
        return ImageFolder(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise ConvscopeError(f"{path}: a single image; a dataset is {SPECS}")
        return ImageList(path)
    raise ConvscopeError(f"dataset {text!r}: no such folder or file; a dataset is {SPECS}")


def _count(spec: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ConvscopeError(f"dataset {spec!r}: the count after ':' must be a positive whole number")
    return int(text)


def _check_count(spec: str, count: int) -> None:
    if count > MAX_ITEMS:
        raise ConvscopeError(f"dataset {spec}: {count:,} items, more than the {MAX_ITEMS:,} accepted")
