"""Reading an uploaded image within a fixed memory budget.

The type is sniffed from the bytes; the size, the shape and the memory decoding would take are
checked from the header before any pixel is decoded; large images are decoded reduced (JPEG at
a smaller DCT scale) or reduced by an integer factor right after decoding, so only the reduced
image is ever converted to RGB floats.
"""

from __future__ import annotations

import io
import warnings

import torch
from PIL import Image, ImageOps

from convscope.core.images import load_image
from convscope.errors import ConvscopeError

#: Accepted formats, recognized by their first bytes (the name and the declared type are ignored).
ACCEPTED = "JPEG, PNG, WebP, BMP or TIFF"
#: Images whose longer side is more than this many times the shorter one are refused.
MAX_ASPECT = 20
MIN_SIDE = 8
#: Bytes per pixel as Pillow holds each mode in memory (every other mode takes 4).
_NATIVE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}
#: Modes Pillow can reduce without converting them first.
_REDUCIBLE = ("L", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F")


class UploadError(ConvscopeError):
    """An upload refused with an HTTP status (413 too large, 415 not an image, 400 broken)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sniff(data: bytes) -> str | None:
    """The image format that ``data`` starts with, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def decode_upload(data: bytes, *, max_pixels: int, max_bytes: int, side: int) -> torch.Tensor:
    """``(1, 3, H, W)`` pixels in [0, 1] from an uploaded file's bytes, its longer side reduced
    by an integer factor to less than ``2 * side`` when it is longer.

    Args:
        max_pixels: the most pixels accepted.
        max_bytes: the most memory decoding may take (the decoded image plus its conversion).
        side: the longer side wanted (images are reduced only down to it, never below).

    Raises:
        UploadError: not one of the accepted formats (415), too many pixels or bytes to decode
            (413), a degenerate shape, or corrupt (400).
    """
    kind = sniff(data)
    if kind is None:
        raise UploadError(415, f"the upload is not an image (by its content); accepted: {ACCEPTED}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError(413, f"the image has too many pixels to decode safely; at most "
                               f"{max_pixels / 1e6:.0f} megapixels are accepted") from None
    except Exception:  # noqa: BLE001 - any failure to read the header is a broken file
        raise UploadError(400, f"the {kind} image is corrupt or truncated") from None
    with image:
        if image.format != kind:
            raise UploadError(415, f"the upload starts like {kind} but is read as {image.format}; "
                                   f"accepted: {ACCEPTED}")
        _check_size(image, max_pixels, max_bytes)
        try:
            return load_image(ImageOps.exif_transpose(_reduced(image, side)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise UploadError(400, f"the {kind} image is corrupt or truncated") from None


def _check_size(image: Image.Image, max_pixels: int, max_bytes: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise UploadError(413, f"the image has {width}x{height} pixels; at most {max_pixels / 1e6:.0f} megapixels "
                               f"are accepted")
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise UploadError(400, f"the image is {width}x{height} pixels; accepted: sides of at least {MIN_SIDE} "
                               f"pixels, the longer at most {MAX_ASPECT} times the shorter")
    if _decoding_bytes(image) > max_bytes:
        raise UploadError(413, f"decoding the {width}x{height} {image.mode} image would take "
                               f"{_decoding_bytes(image) / 2**20:.0f} MiB; at most {max_bytes / 2**20:.0f} MiB "
                               f"are allowed (send a smaller image)")


def _decoding_bytes(image: Image.Image) -> int:
    """Memory for the decoded image, plus an RGBA copy when its mode must be converted before
    it can be reduced (palette, 1-bit and 16-bit images)."""
    pixels = image.size[0] * image.size[1]
    native = pixels * _NATIVE_BYTES.get(image.mode, 4)
    return native + (0 if image.mode in _REDUCIBLE else 4 * pixels)


def _reduced(image: Image.Image, side: int) -> Image.Image:
    """The decoded image, its longer side divided by the largest integer that keeps it >= ``side``."""
    if image.format == "JPEG":
        image.draft(image.mode, (side, side))  # decodes at 1/2, 1/4 or 1/8 scale, never below side
    image.load()
    factor = max(image.size) // side
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE:
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    return image.reduce(factor)
