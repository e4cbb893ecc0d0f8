"""Reading images safely and turning them into model-ready tensors.

Every tensor here is ``(B, C, H, W)`` float32 in ``[0, 1]`` (pixel space); the model's
normalization happens inside :class:`convscope.models.Model`, never here.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from convscope.errors import ConvscopeError

#: Largest image accepted, in pixels (8192 x 8192). Larger files are refused before they
#: are decoded, which also stops decompression bombs.
MAX_PIXELS = 8192 * 8192
#: Largest file accepted, in bytes.
MAX_BYTES = 256 * 1024 * 1024
ACCEPTED = "JPEG, PNG, WebP, BMP or TIFF"



def load_image(source: str | Path | bytes | np.ndarray | Image.Image | torch.Tensor,
               *, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Reads an image from a path, bytes, PIL image, array or tensor.

    EXIF orientation is applied; grayscale, palette, RGBA (composited on white), CMYK and
    16-bit images are converted to RGB.

    Args:
        source: a file path or its bytes, a PIL image, an ``(H, W[, C])`` uint8/float array,
            or a ``(C, H, W)``/``(1, C, H, W)`` tensor in [0, 1].
        size: if given, resize the shorter side to it and center-crop to a square (or to the
            ``(height, width)`` given).

    Returns:
        ``(1, 3, H, W)`` float32 tensor in [0, 1].

    Raises:
        ConvscopeError: the file is missing, empty, too large, corrupt or not an image.
    """
    if isinstance(source, torch.Tensor):
        x = _tensor_to_batch(source)
    elif isinstance(source, np.ndarray):
        x = array_to_tensor(source)
    else:
        x = _pil_to_tensor(source if isinstance(source, Image.Image) else _open(source))
    return fit(x, size) if size is not None else x


def _open(source: str | Path | bytes) -> Image.Image:
    """Opens and fully decodes an image file, refusing anything unsafe or broken."""
    name = "image bytes" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else _read_file(Path(source))
    if not data:
        raise ConvscopeError(f"{name}: the file is empty; expected a {ACCEPTED} image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(name, image.size)
            image.load()
    except ConvscopeError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ConvscopeError(f"{name}: the image is too large to decode safely ({_short(e)}); "
                             f"at most {MAX_PIXELS // 10**6} megapixels are accepted") from None
    except (UnidentifiedImageError, ImportError):  # ImportError: a library's patch of Image.open (Ultralytics
        # retries unknown files with pi_heif) fails where PIL alone says it cannot identify the file
        raise ConvscopeError(f"{name}: not a readable image (unrecognized format); "
                             f"expected a {ACCEPTED} image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ConvscopeError(f"{name}: the image is corrupt or truncated ({_short(e)})") from None
    return ImageOps.exif_transpose(image)


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise ConvscopeError(f"{path}: no such file")
    if not path.is_file():
        raise ConvscopeError(f"{path}: not a file; expected a {ACCEPTED} image")
    if path.stat().st_size > MAX_BYTES:
        raise ConvscopeError(f"{path}: the file is larger than {MAX_BYTES // 2**20} MiB")
    return path.read_bytes()


def _check_pixels(name: str, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS or width <= 0 or height <= 0:
        raise ConvscopeError(f"{name}: {width}x{height} pixels is outside what is accepted "
                             f"(at most {MAX_PIXELS // 10**6} megapixels)")


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:120] if str(error) else type(error).__name__


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """Converts any PIL mode to a ``(1, 3, H, W)`` tensor in [0, 1]."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image).astype(np.float32)
        scale = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return array_to_tensor(np.clip(array / scale, 0.0, 1.0))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return array_to_tensor(np.asarray(image.convert("RGB")))


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W)``/``(H, W, C)`` uint8 (0..255) or float (0..1) array -> ``(1, 3, H, W)``."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ConvscopeError(f"image array of shape {array.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) / 65535.0
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[:3]
    return _to_rgb(x.clamp(0, 1))[None]


def _tensor_to_batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConvscopeError(f"image tensor of shape {tuple(x.shape)}; expected (C, H, W) or (B, C, H, W) "
                             f"with C = 1 or 3")
    return x.float()


def _to_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def fit(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resizes the shorter side and center-crops, like ImageNet evaluation (crop ratio 1).

    Args:
        x: ``(B, C, H, W)`` images.
        size: output side, or ``(height, width)``.

    Returns:
        ``(B, C, height, width)`` images, antialiased when shrinking.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    _, _, h, w = x.shape
    scale = max(out_h / h, out_w / w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return x[:, :, top:top + out_h, left:left + out_w].clamp(0, 1).contiguous()


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, *size)`` by bilinear interpolation, antialiased when shrinking;
    ``x`` itself when it already has that size. The aspect ratio is not kept (see :func:`fit`)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` or ``(1, 3, H, W)`` tensor in [0, 1] -> ``(H, W, 3)`` uint8 array."""
    if x.dim() == 4:
        x = x[0]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


#: File name endings read as images when a folder is given.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def load_folder(folder: str | Path, *, limit: int = 10_000) -> list[torch.Tensor]:
    """Every image file directly in ``folder`` (sorted by name), each ``(1, 3, H, W)`` in [0, 1].

    Raises:
        ConvscopeError: not a folder, no image in it, more than ``limit`` images, or a bad file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConvscopeError(f"{folder}: no such folder")
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConvscopeError(f"{folder}: no images in it (accepted endings: {', '.join(IMAGE_SUFFIXES)})")
    if len(files) > limit:
        raise ConvscopeError(f"{folder}: {len(files)} images, more than the {limit} accepted")
    return [load_image(path) for path in files]
