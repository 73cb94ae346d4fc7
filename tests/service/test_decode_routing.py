"""Which uploads decode on the event loop: only those whose header promises a small, single image."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from PIL import GifImagePlugin, Image

from service.app import DECODE_THREADS, create_app
from service.decode import (
    INLINE_DECODE_BYTES,
    INLINE_DECODE_PIXELS,
    MAX_JPEG_SCANS,
    decode_image,
    decodes_quickly,
)
from service.errors import ApiError
from service.settings import Settings
from tests.service.hostile import png_chunk


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


def test_small_images_decode_inline_and_big_ones_do_not() -> None:
    assert decodes_quickly(_png(28, 28))
    side = int(INLINE_DECODE_PIXELS**0.5)
    assert decodes_quickly(_png(side, side))
    # One pixel over the limit: a tiny file (zeros compress well) that decodes big goes to the thread pool.
    big = _png(side + 1, side)
    assert len(big) < 2000 and not decodes_quickly(big)


def test_unreadable_or_animated_bodies_take_the_careful_path() -> None:
    assert not decodes_quickly(b"")
    assert not decodes_quickly(b"definitely not an image")
    assert not decodes_quickly(_png(28, 28)[:20])  # truncated before the size is known
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert not decodes_quickly(buf.getvalue())


def test_a_gif_of_many_frames_is_refused_after_reading_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting a GIF's frames reads all of them (0.5 s for 350,000 one-pixel frames, on the
    event loop): the checks must stop at the second frame."""
    frames = [Image.new("L", (1, 1), v % 256) for v in range(500)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    seeks: list[int] = []
    real_seek = GifImagePlugin.GifImageFile._seek

    def counting_seek(self: GifImagePlugin.GifImageFile, frame: int, update_image: bool = True) -> None:
        seeks.append(frame)
        real_seek(self, frame, update_image)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", counting_seek)
    assert not decodes_quickly(buf.getvalue())
    with pytest.raises(ApiError) as e:
        decode_image(buf.getvalue(), 10_000, 100)
    assert e.value.code == "multi_frame_image"
    assert max(seeks) <= 1, f"walked to frame {max(seeks)}"


def test_a_small_image_in_a_big_file_takes_the_careful_path() -> None:
    """The work of a decode grows with the file too: a 256x256 JPEG of 5 MB (430,000 repeated
    scans), or a PNG of 400,000 tiny chunks, held the event loop for seconds."""
    small = _png(28, 28)
    padded = small[:33] + b"".join(png_chunk(b"tEXt", b"k\x00" + b"v" * 60) for _ in range(1100)) + small[33:]  # after IHDR
    assert Image.open(io.BytesIO(padded)).size == (28, 28) and len(padded) > INLINE_DECODE_BYTES
    assert decodes_quickly(small) and not decodes_quickly(padded)


def _progressive_jpeg_with_repeated_scan(repeats: int, side: int = 64) -> bytes:
    """A valid progressive JPEG whose first AC scan is repeated: libjpeg decodes every scan over
    the whole image, so each repeat costs a full pass (a 1 MB file of them took 51 s)."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True, quality=50)
    data = buf.getvalue()
    i, segments = 2, []
    while data[i + 1] != 0xD9:  # to the end of image, one marker segment (and a scan's data) at a time
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        end = i + 2 + length
        if data[i + 1] == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
        segments.append(data[i:end])
        i = end
    scans = [k for k, seg in enumerate(segments) if seg[1] == 0xDA]
    k = scans[1]  # the first scan after the DC one
    return data[:2] + b"".join(segments[: k + 1]) + segments[k] * repeats + b"".join(segments[k + 1 :]) + b"\xff\xd9"


def test_a_jpeg_of_too_many_scans_is_refused_before_decoding() -> None:
    normal = _progressive_jpeg_with_repeated_scan(0)
    assert decode_image(normal, 10_000, 100).width == 64  # an ordinary progressive JPEG decodes
    assert decode_image(_progressive_jpeg_with_repeated_scan(MAX_JPEG_SCANS - 20), 10_000, 100).width == 64  # valid, within the bound
    with pytest.raises(ApiError) as e:
        decode_image(_progressive_jpeg_with_repeated_scan(MAX_JPEG_SCANS), 10_000, 100)
    assert (e.value.status, e.value.code) == (422, "corrupt_image") and "scans" in e.value.message


def test_uploads_decode_on_threads_of_their_own(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In anyio's shared pool, uploads queued for the two large-decode slots took all 40 threads,
    and the plain `def` routes (the model card, OIP health) waited behind them."""
    limiters: list[object] = []
    real = anyio.to_thread.run_sync

    async def recording(func: Callable[..., object], *args: object, limiter: object = None, **kw: object) -> object:
        limiters.append(limiter)
        return await real(func, *args, limiter=limiter, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio.to_thread, "run_sync", recording)
    s = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    with TestClient(create_app(s)) as c:
        big = _png(300, 300)  # over the inline limit: decoded off the event loop
        assert c.post("/v1/predict", content=big, headers={"content-type": "image/png"}).status_code == 200
        assert c.post("/v1/predict/batch", files=[("images", ("a.png", big, "image/png"))]).status_code == 200
        own = c.app.state.ctx.decodes  # type: ignore[attr-defined]
    decode_calls = [limiter for limiter in limiters if limiter is own]
    assert len(decode_calls) == 2 and own.total_tokens == DECODE_THREADS, limiters
