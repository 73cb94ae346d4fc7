"""Which uploads decode on the event loop: only those whose header promises a small, single image."""

from __future__ import annotations

import io

from PIL import Image

from service.decode import INLINE_DECODE_PIXELS, decodes_quickly


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
