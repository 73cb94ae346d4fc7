"""Which uploads decode on the event loop: only those whose header promises a small, single image."""

from __future__ import annotations

import io

import pytest
from PIL import GifImagePlugin, Image

from service.decode import INLINE_DECODE_PIXELS, decode_image, decodes_quickly
from service.errors import ApiError


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
