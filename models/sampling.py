"""Seedable random draws shared by the stochastic methods (MC dropout, Bayes by Backprop, Laplace).

A model holds an optional `torch.Generator`: None draws from torch's global RNG (the
default when serving); a seeded one makes samples reproducible, which is what the
bundle round-trip tests rely on. The generator may live on another device than the
activations (a CPU generator with a GPU model), so draws happen on the generator's
device and are moved afterwards.
"""

from __future__ import annotations

import torch


def seeded_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with `seed`, or None (global RNG) when `seed` is None."""
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def _device(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    return like.device if generator is None else generator.device


def randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of `shape`, on `like`'s device and dtype."""
    noise = torch.randn(shape, generator=generator, device=_device(generator, like), dtype=like.dtype)
    return noise.to(like.device)


def dropout_mask(
    shape: tuple[int, ...], p: float, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Inverted-dropout mask of `shape`: 0 with probability p, else 1/(1-p).

    Scaling by 1/(1-p) keeps the expected activation equal to the one the
    non-dropout layers saw during training (Srivastava et al. 2014).
    """
    keep = torch.rand(shape, generator=generator, device=_device(generator, like)) >= p
    return keep.to(device=like.device, dtype=like.dtype) / (1.0 - p)
