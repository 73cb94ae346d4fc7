"""Untrusted bytes -> a validated image, refused early and clearly when it is bad.

Order matters for safety: the format is checked against an allow-list and the
dimensions are read from the header *before* any pixel is decoded, so a tiny file that
claims 20000x20000 pixels (a decompression bomb) never allocates them.
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from models.preprocess import UPLOAD_FORMATS, WORK_SIDE, load_working_copy
from service.errors import ApiError

ALLOWED_FORMATS = set(UPLOAD_FORMATS)
ACCEPTED = ", ".join(sorted(ALLOWED_FORMATS))  # as a person reads it in an error message
#: Pixel modes models/preprocess.py converts (issue 8: tested with random images of each);
#: anything else (LAB, HSV, 32-bit integer...) is refused before decoding.
ALLOWED_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

#: Large decodes (a side over WORK_SIDE: up to ~230 MB each for an RGBA PNG at the pixel
#: limit) run at most this many at once in the process, so concurrent uploads of small
#: files that decode big cannot add up to gigabytes. Decoding is CPU-bound: on a few
#: cores, more at once would not finish sooner. One process-wide limit, by design.
_LARGE_DECODES = threading.BoundedSemaphore(2)


def _sniff_format(data: bytes) -> str | None:
    """Which format these bytes claim to be, from the plugins' magic-number checks only.

    Asked once Image.open found no allow-listed plugin that could read them. Only
    allow-listed plugins ever parse an upload (Image.open(formats=...)); this lets the
    refusal of, say, an ICO or EPS name the format without parsing it, and tells a damaged
    PNG (magic bytes right, header broken) from bytes that are no image at all.
    """
    Image.init()
    prefix = data[:16]
    for fmt, (_, accept) in Image.OPEN.items():
        if accept is None:
            continue
        try:
            if accept(prefix):
                return fmt
        except (SyntaxError, IndexError, TypeError, struct.error):  # what Image.open tolerates from them too
            continue
    return None


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    format: str
    width: int
    height: int
    mode: str


def has_frames_after_first(img: Image.Image) -> bool:
    """Whether an image has a second frame (animation, page), without counting them all.

    `n_frames` walks every frame of a GIF: a 5 MB file of 350,000 one-pixel frames took
    0.5 s per upload, on the event loop. `is_animated` stops at frame 2.
    """
    animated = getattr(img, "is_animated", None)
    return bool(animated) if animated is not None else getattr(img, "n_frames", 1) > 1


#: Images up to this many pixels decode on the event loop: a 28x28 PNG takes ~30 us,
#: less than a hop to a worker thread and back; 256x256 stays well under a millisecond.
INLINE_DECODE_PIXELS = 256 * 256
#: ...and up to this many bytes: the work of a decode grows with the file as well as with its
#: pixels. A 5 MB progressive JPEG of 256x256 pixels repeating one scan 430,000 times, or a
#: PNG of 400,000 tiny chunks, held the event loop for seconds (every request waited).
INLINE_DECODE_BYTES = 64 * 1024
#: The most scans a JPEG may have. libjpeg decodes each scan of a progressive JPEG over the
#: whole image, so the work grows with their number: a 1 MB file repeating one 42-byte scan
#: 20,000 times took 51 s to decode. Encoders write about 10 (libjpeg's progressive script:
#: 6 for grayscale, 10 for colour), an EXIF thumbnail a few more.
MAX_JPEG_SCANS = 100
_SOS = b"\xff\xda"  # start of scan: in entropy-coded data a 0xFF byte is followed by 0x00 or a marker


def decodes_quickly(data: bytes) -> bool:
    """Whether the header promises a small image (reads the header only, never pixels).

    Anything unreadable says False: the thread-pool path then decodes it and raises the
    precise 4xx error, so this check never has to be right about bad input.
    """
    if len(data) > INLINE_DECODE_BYTES:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            w, h = img.size
            return w * h <= INLINE_DECODE_PIXELS and not has_frames_after_first(img)
    except Exception:  # noqa: BLE001 - any failure just routes the bytes to the careful path
        return False


def decode_image(data: bytes, max_pixels: int, max_side: int) -> DecodedImage:
    """Validate and fully decode `data`, raising `ApiError` (4xx) for anything unusable."""
    if not data:
        raise ApiError(400, "empty_body", "the request carries no image bytes")
    try:
        with warnings.catch_warnings():
            # Pillow warns about damage it works around (corrupt EXIF, oversized tags): the
            # upload is answered on its merits, not with a warning per request in the log.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            fmt = img.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise ApiError(415, "unsupported_format", f"image format {fmt} is not accepted; use one of {ACCEPTED}")
            w, h = img.size
            if w < 1 or h < 1 or w > max_side or h > max_side or w * h > max_pixels:
                raise ApiError(413, "image_too_large", f"{w}x{h} pixels exceeds the limit ({max_side} per side, {max_pixels} in all)")
            if img.mode not in ALLOWED_MODES:
                raise ApiError(415, "unsupported_image_mode", f"pixel mode {img.mode} is not accepted; send grayscale, RGB(A), palette or CMYK")
            if has_frames_after_first(img):
                raise ApiError(422, "multi_frame_image", "animated or multi-page images are not accepted; send a single frame")
            # Counted in the bytes, an upper bound (markers inside an EXIF thumbnail count too).
            if fmt == "JPEG" and (scans := data.count(_SOS)) > MAX_JPEG_SCANS:
                raise ApiError(422, "corrupt_image", f"the JPEG image has {scans} scans, over the {MAX_JPEG_SCANS} decoded (encoders write about 10)")
            if max(w, h) <= WORK_SIDE:
                img.load()
            else:
                with _LARGE_DECODES:
                    load_working_copy(img)  # the log keeps the header's size
    except ApiError:
        raise
    except UnidentifiedImageError as e:
        fmt = _sniff_format(data)
        if fmt in ALLOWED_FORMATS:
            raise ApiError(422, "corrupt_image", f"the {fmt} image could not be read: damaged, or a variant of {fmt} that is not supported") from e
        if fmt is not None:
            raise ApiError(415, "unsupported_format", f"image format {fmt} is not accepted; use one of {ACCEPTED}") from e
        raise ApiError(415, "not_an_image", f"the body is not a recognised image; accepted formats: {ACCEPTED}") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ApiError(413, "image_too_large", "the image is too large to decode") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(422, "corrupt_image", f"the image could not be decoded: {e}") from e
    return DecodedImage(img, fmt, w, h, img.mode)
