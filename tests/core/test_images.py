"""Image reading: formats, orientation, modes, and refusing bad files."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import convscope as cs
from convscope.core.images import fit, to_uint8


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data
    return data.chelsea()[:120, :160]


@pytest.mark.parametrize("fmt,tolerance", [("PNG", 0), ("BMP", 0), ("TIFF", 0), ("JPEG", 0.08), ("WEBP", 0.08)])
def test_formats_round_trip(tmp_path, photo, fmt, tolerance):
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(photo).save(path, format=fmt)
    x = cs.load_image(path)
    assert x.shape == (1, 3, 120, 160) and x.dtype == torch.float32
    error = (x[0].permute(1, 2, 0) - torch.from_numpy(photo) / 255).abs().mean()
    assert error <= tolerance + 1e-7


def test_exif_orientation_is_applied(tmp_path, photo):
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    x = cs.load_image(path)
    assert x.shape == (1, 3, 160, 120)
    expected = np.asarray(image.transpose(Image.Transpose.ROTATE_270)) / 255
    assert np.abs(x[0].permute(1, 2, 0).numpy() - expected).mean() < 0.03


def test_modes_are_converted(tmp_path):
    gray = Image.fromarray(np.full((4, 4), 128, np.uint8))
    palette = gray.convert("P")
    rgba = Image.fromarray(np.zeros((4, 4, 4), np.uint8))  # fully transparent black
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 0, 0))        # magenta
    sixteen = Image.fromarray(np.array([[65535, 32768]], np.uint16))
    results = {}
    for name, image in [("gray", gray), ("palette", palette), ("rgba", rgba), ("cmyk", cmyk), ("16", sixteen)]:
        path = tmp_path / f"{name}.{'tif' if name == 'cmyk' else 'png'}"
        image.save(path)
        results[name] = cs.load_image(path)[0]
    assert torch.allclose(results["gray"], torch.tensor(128 / 255))
    assert torch.allclose(results["palette"], torch.tensor(128 / 255))
    assert torch.allclose(results["rgba"], torch.ones(1))  # composited on white
    assert torch.allclose(results["cmyk"][:, 0, 0], torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(results["16"][0, 0], torch.tensor([1.0, 32768 / 65535]))


def _jpeg_bytes(photo) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_bad_files_are_refused(tmp_path, photo):
    jpeg = _jpeg_bytes(photo)
    cases = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt or truncated"),
        "empty.png": (b"", "empty"),
        "text.png": (b"hello, I am not an image\n" * 10, "not a readable image"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(cs.ConvscopeError, match=message):
            cs.load_image(tmp_path / name)
    with pytest.raises(cs.ConvscopeError, match="no such file"):
        cs.load_image(tmp_path / "missing.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (30000, 30000)).save(path)  # 900 megapixels, ~100 kB on disk
    with pytest.raises(cs.ConvscopeError, match="too large"):
        cs.load_image(path)


def test_fit_resizes_shorter_side_and_center_crops():
    x = torch.zeros(1, 3, 100, 200)
    x[..., 50:150] = 1.0  # the middle half of the width is white
    y = fit(x, 50)
    assert y.shape == (1, 3, 50, 50)
    assert torch.allclose(y[..., 1:-1], torch.ones(1))  # the center crop is white
    assert (y[..., [0, -1]] > 0.5).all()               # but for antialiasing at its edges
    assert torch.equal(fit(y, 50), y)


def test_uint8_round_trip():
    x = torch.rand(1, 3, 5, 7)
    array = to_uint8(x)
    assert array.shape == (5, 7, 3)
    assert np.abs(array / 255 - x[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def test_a_bad_file_is_refused_in_one_line_also_under_ultralytics_patch_of_pil(tmp_path, monkeypatch):
    """Importing Ultralytics replaces PIL's Image.open with one that retries unknown files through
    pi_heif, which raises ImportError where that is not installed: still one line."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path))  # its settings file, if this imports it first
    pytest.importorskip("ultralytics.utils.patches")
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(cs.ConvscopeError, match="not a readable image"):
        cs.load_image(bad)
