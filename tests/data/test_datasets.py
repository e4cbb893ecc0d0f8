"""Datasets, the loader and the chunk store: labels, unreadable files, resumable runs."""

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.data.datasets import AugmentedPhotos, Digits, ImageFolder, ImageList, open_dataset
from convscope.data.distributed import Ranks
from convscope.data.loader import stream
from convscope.data.results import ChunkStore
from convscope.errors import ConvscopeError


@pytest.fixture()
def folder(tmp_path):
    """Two classes of small images, one corrupt file, one hidden file, one non-image."""
    rng = np.random.default_rng(0)
    for name in ("cats/a.png", "cats/deep/b.jpg", "dogs/c.png", "dogs/d.bmp"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "dogs" / ".hidden.png").write_bytes(b"")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_is_recursive_sorted_and_labelled_by_subfolder(folder):
    dataset = ImageFolder(folder)
    assert [str(p) for p in dataset.files] == ["cats/a.png", "cats/deep/b.jpg", "dogs/broken.png", "dogs/c.png",
                                               "dogs/d.bmp"]
    assert dataset.classes == ["cats", "dogs"]
    assert [dataset.label(i) for i in range(len(dataset))] == [0, 0, 1, 1, 1]
    assert dataset.read(0).shape == (3, 20, 30)


def test_files_at_the_top_mean_no_labels(tmp_path):
    Image.new("RGB", (9, 9)).save(tmp_path / "x.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (9, 9)).save(tmp_path / "sub" / "y.png")
    dataset = ImageFolder(tmp_path)
    assert dataset.classes is None and dataset.label(1) == -1


def test_list_file_with_labels_relative_to_itself(folder):
    listing = folder / "list.txt"
    listing.write_text("# path, label\ncats/a.png, cat\n\ndogs/c.png, dog\nmissing.png, dog\n")
    dataset = open_dataset(listing)
    assert isinstance(dataset, ImageList) and dataset.classes == ["cat", "dog"]
    assert [dataset.label(i) for i in range(3)] == [0, 1, 1]
    assert torch.equal(dataset.read(1), ImageFolder(folder).read(3))
    with pytest.raises(ConvscopeError, match="no such file"):
        dataset.read(2)


def test_unreadable_files_are_skipped_and_named(folder):
    dataset = ImageFolder(folder)
    batches = list(stream(dataset, [0], chunk_size=5, size=(8, 8), channels=3, batch_size=2, workers=2))
    assert [b.indices.tolist() for b in batches] == [[0, 1], [3], [4]]
    assert [b.last for b in batches] == [False, False, True]
    failures = [f for b in batches for f in b.failures]
    assert [(f.index, f.name) for f in failures] == [(2, str(folder / "dogs/broken.png"))]
    assert "not a readable image" in failures[0].reason
    assert batches[0].images.shape == (2, 3, 8, 8)


def test_synthetic_datasets_are_deterministic_and_labelled():
    digits = Digits(2000)
    assert torch.equal(digits.read(1900), Digits(2000).read(1900))
    assert digits.label(1900) == digits.label(1900 - 1797)
    assert not torch.equal(digits.read(1900), digits.read(1900 - 1797))
    photos = AugmentedPhotos(8, size=32)
    assert photos.read(5).shape == (3, 32, 32) and torch.equal(photos.read(5), photos.read(5))
    assert [photos.label(i) for i in range(5)] == [0, 1, 2, 3, 0]


@pytest.mark.parametrize("spec, message", [
    ("nowhere/at/all", "no such folder or file"), ("digits:0", "positive whole number"),
    ("digits:x", "positive whole number"), ("photos:99999999999", "more than"),
])
def test_bad_dataset_names_are_one_line_errors(spec, message):
    with pytest.raises(ConvscopeError, match=message):
        open_dataset(spec)


def test_a_single_image_or_an_empty_folder_is_not_a_dataset(tmp_path):
    Image.new("RGB", (9, 9)).save(tmp_path / "x.png")
    with pytest.raises(ConvscopeError, match="single image"):
        open_dataset(tmp_path / "x.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvscopeError, match="no images"):
        open_dataset(tmp_path / "empty")


def test_chunk_store_resumes_and_refuses_a_different_run(tmp_path):
    store = ChunkStore(tmp_path, {"layer": "a"}, count=10, chunk_size=4, ranks=Ranks())
    assert store.chunks == 3 and store.pending() == [0, 1, 2]
    store.save(1, {"x": np.arange(3)}, [])
    again = ChunkStore(tmp_path, {"layer": "a"}, count=10, chunk_size=4, ranks=Ranks())
    assert again.pending() == [0, 2] and again.load(1)["x"].tolist() == [0, 1, 2]
    with pytest.raises(ConvscopeError, match="different run.*layer"):
        ChunkStore(tmp_path, {"layer": "b"}, count=10, chunk_size=4, ranks=Ranks())
    with pytest.raises(ConvscopeError, match="different run.*chunk_size"):
        ChunkStore(tmp_path, {"layer": "a"}, count=10, chunk_size=5, ranks=Ranks())


def test_ranks_share_work_round_robin():
    assert Ranks(0, 2).share([0, 1, 2, 3, 4]) == [0, 2, 4]
    assert Ranks(1, 2).share([0, 1, 2, 3, 4]) == [1, 3]
