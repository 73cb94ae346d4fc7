"""Per-image affine distortions: the identity is exact, a pixel shift is a pixel shift, each image gets its own draw."""

from __future__ import annotations

import torch

from training.distort import apply_affine, random_affine


def _digits(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_zero_strength_is_the_identity() -> None:
    x = _digits()
    out = random_affine(x, torch.Generator().manual_seed(1), rotation_deg=0, scale=0, shear_deg=0, translate_px=0)
    assert torch.allclose(out, x, atol=1e-5)


def test_a_one_pixel_translation_moves_the_content_by_one_pixel() -> None:
    x = _digits()
    theta = torch.tensor([[1.0, 0.0, 2 / 28], [0.0, 1.0, 0.0]]).expand(4, 2, 3)
    out = apply_affine(x, theta)
    # The output samples the input one pixel to the right: content moves left, zeros enter.
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-5)
    assert float(out[..., -1].abs().max()) < 1e-5


def test_each_image_gets_its_own_seeded_distortion() -> None:
    same = _digits(1).expand(6, 1, 28, 28).contiguous()
    out = random_affine(same, torch.Generator().manual_seed(3))
    again = random_affine(same, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)  # reproducible from the seed
    flat = out.flatten(1)
    assert all(not torch.allclose(flat[i], flat[j], atol=1e-3) for i in range(6) for j in range(i + 1, 6))
    assert not torch.allclose(out[0], same[0], atol=1e-3)  # and it does distort
    # Mild: the ink stays mostly in place (a large rotation or scale would move most of it).
    assert float((out - same).abs().mean()) < float(same.abs().mean())
