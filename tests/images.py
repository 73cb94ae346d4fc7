"""Image bytes for tests: real MNIST digits, noise, and broken files."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def png(arr: np.ndarray | torch.Tensor, mode: str | None = None, fmt: str = "PNG") -> bytes:
    """Encode a [H, W] array in [0, 1] (or uint8) as an image file."""
    a = arr.numpy() if isinstance(arr, torch.Tensor) else arr
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(a)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def digit_png(x: torch.Tensor) -> bytes:
    """An MNIST tensor [1, 28, 28] in [0, 1] as PNG bytes."""
    return png(x[0])


def noise_png(seed: int = 0, size: int = 28) -> bytes:
    rng = np.random.default_rng(seed)
    return png(rng.uniform(0, 1, (size, size)))
