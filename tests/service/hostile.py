"""Hostile and malformed inputs for the issue 8 tests: made at test time, never committed."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (400 megapixels) in about 50 kB.

    Rows are compressed one at a time, so making it never holds the pixels either.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def digit(mode: str = "L", size: int = 28) -> Image.Image:
    """A white stroke on black, converted to `mode`."""
    a = np.zeros((size, size), np.uint8)
    a[size // 4 : 3 * size // 4, size // 2 - 2 : size // 2 + 2] = 255
    return Image.fromarray(a).convert(mode)


def animated_gif() -> bytes:
    frames = [digit("P"), digit("P").rotate(90)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def multipage_tiff() -> bytes:
    return encode(digit(), "TIFF", save_all=True, append_images=[digit().rotate(90)])


def sixteen_bit_png(size: int = 28) -> bytes:
    a = (np.asarray(digit("L", size), np.uint16) * 257).astype(np.uint16)
    return encode(Image.fromarray(a), "PNG")


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><script>alert(1)</script></svg>'

