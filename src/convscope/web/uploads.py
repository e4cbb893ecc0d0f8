"""Reading an uploaded image: its type sniffed from the bytes, its size limited before decoding."""

from __future__ import annotations

import io

import torch
from PIL import Image

from convscope.core.images import load_image
from convscope.errors import ConvscopeError

#: Accepted formats, recognized by their first bytes (the name and the declared type are ignored).
ACCEPTED = "JPEG, PNG, WebP, BMP or TIFF"


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


def decode_upload(data: bytes, *, max_pixels: int) -> torch.Tensor:
    """``(1, 3, H, W)`` pixels in [0, 1] from an uploaded file's bytes.

    Raises:
        UploadError: empty, not one of the accepted formats, more than ``max_pixels``, or corrupt.
    """
    kind = sniff(data)
    if kind is None:
        raise UploadError(415, f"the upload is not an image (by its content); accepted: {ACCEPTED}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            declared = image.format
    except Exception:  # noqa: BLE001 - any failure to read the header is a broken file
        raise UploadError(400, f"the {kind} image is corrupt or truncated") from None
    if declared != kind:
        raise UploadError(415, f"the upload starts like {kind} but is read as {declared}; accepted: {ACCEPTED}")
    if width * height > max_pixels:
        raise UploadError(413, f"the image has {width}x{height} pixels; at most {max_pixels / 1e6:.0f} megapixels "
                               f"are accepted")
    try:
        return load_image(data)
    except ConvscopeError as error:
        raise UploadError(400, str(error).replace("image bytes: ", "")) from None
