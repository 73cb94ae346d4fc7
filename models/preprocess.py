"""PIL image -> model input tensor, following the bundle's input spec.

Shared by the service (uploads) and the evaluation (`--ood-dir`), so a user's own
images are converted exactly as the service converts them. Inputs that are not of the
spec's size are reframed like MNIST was made (LeCun et al.): ink cropped to its
bounding box, scaled to fit 20/28 of the side, and centred by its centre of mass.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from models.manifest import InputSpec

_INK = 0.2  # pixels above this (after polarity fix) count as ink for the bounding box

#: Image formats the service accepts for uploads (an allow-list: Pillow's other plugins, EPS
#: through Ghostscript among them, never see untrusted bytes); `--ood-dir` reads these too.
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")

#: Longest side kept after decoding. Models take inputs of a few hundred pixels at most,
#: while converting a 25-megapixel upload at full size cost ~400 MB for one request
#: (measured); JPEGs are even decoded at reduced scale (DCT scaling) when that suffices.
WORK_SIDE = 1024


def load_working_copy(img: Image.Image) -> None:
    """Decode an opened image in place, keeping at most `WORK_SIDE` pixels per side.

    The first step of converting any image, for the service and for `--ood-dir` alike,
    so that a large image reaches `to_model_input` at the same size on both paths.
    """
    if img.format == "JPEG":
        img.draft(None, (WORK_SIDE, WORK_SIDE))  # decode at 1/2..1/8 scale, still at least this size
    img.load()
    if max(img.size) > WORK_SIDE:
        # Pillow's thumbnail first reduces by a whole factor when the image is at least twice
        # `reducing_gap` times the target, and its reduce() refuses 16-bit modes ("image has
        # wrong mode": a 5000 px 16-bit scan was refused as corrupt); those are resized directly.
        gap = None if img.mode.startswith("I;16") else 2.0
        img.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS, reducing_gap=gap)


def upright(img: Image.Image) -> Image.Image:
    """The image as viewers show it: phone cameras store the pixels as the sensor saw them
    and an EXIF orientation tag that says how to turn them; the model must see what the
    person who uploaded it saw, or a 7 on its side is read as something else."""
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        return ImageOps.exif_transpose(img) if orientation in range(2, 9) else img
    except Exception:  # noqa: BLE001 - unreadable EXIF: the pixels as stored, not a refusal
        return img


def _wide_to_gray(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float pixels -> 8-bit, scaled by the brightest finite value.

    Uploads are untrusted: NaN, infinities and negative values (float TIFFs) become 0
    instead of wrapping around in the cast to bytes.
    """
    with np.errstate(all="ignore"):  # signalling NaNs warn in the cast; they are zeroed next
        arr = np.asarray(img).astype(np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0).clip(0.0, None)
    hi = arr.max() if arr.max() > 0 else 1.0
    return Image.fromarray((arr / hi * 255.0).round().astype(np.uint8), mode="L")


def _paper(rgba: Image.Image) -> tuple[int, int, int, int]:
    """What a transparent background stands for: the colour the ink is drawn against.

    White paper, unless the ink (the visible pixels, weighted by their opacity) is light: a
    white stroke on a transparent canvas, as drawing apps export it, over white paper was
    white on white, an empty image the service rejected as out of distribution.
    """
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32)
    if alpha.sum() == 0:
        return (255, 255, 255, 255)
    # Pillow's own luminance (ITU-R 601), in C: a float64 copy of a 1024² RGBA upload cost 13 ms.
    luminance = np.asarray(rgba.convert("L"), dtype=np.float32)
    ink = float((luminance * alpha).sum() / alpha.sum())
    return (0, 0, 0, 255) if ink > 127.5 else (255, 255, 255, 255)


def _flatten(img: Image.Image, target: str) -> Image.Image:
    """Any accepted mode -> 8-bit `target` ("L" or "RGB"); transparency over paper that
    contrasts with the ink (white, or black under light ink)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_to_gray(img).convert(target)
    has_alpha = img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, _paper(rgba))
        return Image.alpha_composite(paper, rgba).convert(target)
    if img.mode != target:
        return img.convert("RGB").convert(target) if target == "L" else img.convert(target)
    return img


def _to_gray(img: Image.Image) -> Image.Image:
    """Any mode -> 8-bit grayscale; transparency is composited over paper (`_paper`)."""
    return _flatten(img, "L")


def _reframe(arr: np.ndarray, side: int) -> np.ndarray:
    """MNIST-style framing of ink in [0,1] into a ``side x side`` canvas."""
    ys, xs = np.nonzero(arr > _INK)
    if len(ys) == 0:
        return np.asarray(Image.fromarray((arr * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)) / 255.0
    crop = arr[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    box = round(side * 20 / 28)
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.LANCZOS)) / 255.0
    canvas = np.zeros((side, side))
    mass = small.sum()
    cy, cx = (np.indices(small.shape) * small).reshape(2, -1).sum(1) / mass if mass > 0 else (nh / 2, nw / 2)
    top = int(np.clip(round(side / 2 - cy), 0, side - nh))
    left = int(np.clip(round(side / 2 - cx), 0, side - nw))
    canvas[top : top + nh, left : left + nw] = small
    return canvas


def to_model_input(img: Image.Image, spec: InputSpec) -> torch.Tensor:
    """Convert a decoded image to pixels in [0, 1], shape ``[C, H, W]`` (C = spec.channels)."""
    img = upright(img)
    if spec.channels != 1:
        rgb = _flatten(img, "RGB").resize((spec.width, spec.height), Image.BILINEAR)
        return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    gray = np.asarray(_to_gray(img), dtype=np.float64) / 255.0
    if spec.auto_invert:
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        if border.mean() > 0.5:  # light paper, dark ink: flip to MNIST's polarity
            gray = 1.0 - gray
    if gray.shape != (spec.height, spec.width):
        if spec.height == spec.width:
            gray = _reframe(gray, spec.height)
        else:
            gray = np.asarray(ImageOps.fit(Image.fromarray((gray * 255).astype(np.uint8)), (spec.width, spec.height))) / 255.0
    return torch.from_numpy(gray.astype(np.float32)).unsqueeze(0)
