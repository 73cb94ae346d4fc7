"""Property tests of the image decoder and preprocessing (issue 8): nothing crashes.

Random bytes and corrupted images must end in a 4xx `ApiError`, never another
exception; random valid images of every accepted format and pixel mode (16-bit,
palette, CMYK, alpha, float...) must become a finite tensor of the spec's shape in [0, 1].
Deterministic (derandomize) and bounded, so the suite stays fast and repeatable.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from models.manifest import InputSpec
from models.preprocess import to_model_input
from service.decode import decode_image
from service.errors import ApiError

BOUNDED = settings(max_examples=250, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SPECS = [InputSpec(), InputSpec(channels=3, height=16, width=16, mean=[0.5] * 3, std=[0.5] * 3)]

#: Modes each format can write (Pillow), so every generated image is a valid file.
WRITABLE = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["L", "P"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"],
    "WEBP": ["RGB", "RGBA"],
}
COMBOS = [(fmt, mode) for fmt, modes in WRITABLE.items() for mode in modes]


def _image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "F":  # any float32 bit pattern: NaN, infinities, negatives, huge values
        return Image.fromarray(rng.integers(0, 2**32, (h, w), dtype=np.uint32).view(np.float32), mode="F")
    if mode in ("I", "I;16"):
        hi = 2**16 if mode == "I;16" else 2**31
        return Image.fromarray(rng.integers(0, hi, (h, w)).astype(np.int32)).convert(mode) if mode == "I" else Image.fromarray(rng.integers(0, hi, (h, w), dtype=np.uint16))
    base = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode="RGBA")
    return base.convert(mode)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _check_tensor(data: bytes) -> None:
    try:
        img = decode_image(data, max_pixels=1_000_000, max_side=4096)
    except ApiError as e:
        assert 400 <= e.status < 500 and e.code and e.message
        return
    for spec in SPECS:
        x = to_model_input(img.image, spec)
        assert tuple(x.shape) == (spec.channels, spec.height, spec.width)
        assert x.dtype.is_floating_point and bool(x.isfinite().all())
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@BOUNDED
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    _check_tensor(data)


@BOUNDED
@given(st.sampled_from(COMBOS), st.integers(1, 48), st.integers(1, 48), st.integers(0, 2**32 - 1))
def test_random_valid_images_convert(combo: tuple[str, str], w: int, h: int, seed: int) -> None:
    fmt, mode = combo
    data = _encode(_image(mode, w, h, seed), fmt)
    img = decode_image(data, max_pixels=1_000_000, max_side=4096)  # valid: must not be refused
    assert img.format == fmt and (img.width, img.height) == (w, h)
    _check_tensor(data)


@BOUNDED
@given(st.sampled_from(COMBOS), st.integers(0, 2**32 - 1), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8), st.integers(0, 10**6))
def test_corrupted_images_never_crash(combo: tuple[str, str], seed: int, flips: list[tuple[int, int]], cut: int) -> None:
    fmt, mode = combo
    data = bytearray(_encode(_image(mode, 24, 20, seed), fmt))
    for pos, value in flips:  # overwrite a few bytes anywhere, header included
        data[pos % len(data)] = value
    _check_tensor(bytes(data[: max(1, cut % (len(data) + 1))]))


@pytest.mark.parametrize(("fmt", "mode"), COMBOS, ids=[f"{f}-{m}" for f, m in COMBOS])
def test_every_format_and_mode_is_converted_not_refused(fmt: str, mode: str) -> None:
    data = _encode(_image(mode, 30, 20, 7), fmt)
    _check_tensor(data)
    assert decode_image(data, 1_000_000, 4096).format == fmt


@pytest.mark.parametrize(("fmt", "mode"), COMBOS, ids=[f"{f}-{m}" for f, m in COMBOS])
def test_large_images_of_every_mode_convert_from_the_reduced_copy(fmt: str, mode: str) -> None:
    data = _encode(_image(mode, 1300, 24, 3), fmt)
    img = decode_image(data, 1_000_000, 4096)
    assert (img.width, img.height) == (1300, 24) and max(img.image.size) <= 1024
    _check_tensor(data)
