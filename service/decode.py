"""Untrusted bytes -> a validated image, refused early and clearly when it is bad.

Order matters for safety: the format is checked against an allow-list and the
dimensions are read from the header *before* any pixel is decoded, so a tiny file that
claims 20000x20000 pixels (a decompression bomb) never allocates them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from service.errors import ApiError

ALLOWED_FORMATS = {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"}


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    format: str
    width: int
    height: int
    mode: str


def decode_image(data: bytes, max_pixels: int, max_side: int) -> DecodedImage:
    """Validate and fully decode `data`, raising `ApiError` (4xx) for anything unusable."""
    if not data:
        raise ApiError(400, "empty_body", "the request carries no image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise ApiError(415, "unsupported_format", f"image format {fmt} is not accepted; use one of {sorted(ALLOWED_FORMATS)}")
            w, h = img.size
            if w < 1 or h < 1 or w > max_side or h > max_side or w * h > max_pixels:
                raise ApiError(413, "image_too_large", f"{w}x{h} pixels exceeds the limit ({max_side} per side, {max_pixels} in all)")
            if getattr(img, "n_frames", 1) > 1:
                raise ApiError(422, "multi_frame_image", "animated or multi-page images are not accepted; send a single frame")
            img.load()
    except ApiError:
        raise
    except UnidentifiedImageError as e:
        raise ApiError(415, "not_an_image", "the body is not a recognised image") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ApiError(413, "image_too_large", "the image is too large to decode") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(422, "corrupt_image", f"the image could not be decoded: {e}") from e
    return DecodedImage(img, fmt, w, h, img.mode)
