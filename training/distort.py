"""Random affine distortions of digit images, one per image, for ConfidNet's training passes.

A near-perfect classifier is almost never wrong on its own training images. Rotated,
sheared, rescaled and shifted copies of them are written the way many misread test
digits are (slanted, thin, off-centre), so the classifier's true-class probability on
them drops and the head sees realistic failures. Each image gets its own transform
(one `affine_grid` / `grid_sample` call for the batch), unlike `training.loop.random_shift`,
which moves a whole training batch by one offset.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def apply_affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Images ``[B, C, H, W]`` resampled through per-image affine maps ``[B, 2, 3]`` (normalised coords, zero padding)."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(
    x: torch.Tensor, gen: torch.Generator, rotation_deg: float = 10.0, scale: float = 0.1, shear_deg: float = 5.0, translate_px: float = 2.0
) -> torch.Tensor:
    """Each image rotated, sheared, rescaled and shifted by its own draw, uniform in +-each bound."""
    b, _, h, w = x.shape

    def uniform(bound: float, *shape: int) -> torch.Tensor:
        return (torch.rand(b, *shape, generator=gen) * 2 - 1) * bound

    angle, shear = uniform(math.radians(rotation_deg)), uniform(math.radians(shear_deg))
    zoom = 1 + uniform(scale)
    theta = torch.zeros(b, 2, 3)
    # grid_sample maps output to input coordinates, hence the inverse zoom.
    theta[:, 0, 0] = torch.cos(angle) / zoom
    theta[:, 0, 1] = -torch.sin(angle + shear) / zoom
    theta[:, 1, 0] = torch.sin(angle) / zoom
    theta[:, 1, 1] = torch.cos(angle + shear) / zoom
    # A shift of t pixels is 2t/size in normalised coordinates (align_corners=False).
    theta[:, 0, 2] = uniform(translate_px) * 2 / w
    theta[:, 1, 2] = uniform(translate_px) * 2 / h
    return apply_affine(x, theta)
