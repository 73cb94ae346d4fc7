"""Seedable random draws shared by the stochastic methods (MC dropout, Bayes by Backprop, Laplace).

Inference uses common random numbers: every forward restarts a generator from the
bundle's seed (`call_generator`) and the noise is shared by every input of the batch
(MC dropout's masks, the Laplace and variational weight draws). Each input still gets
S independent posterior draws, but its answer is a function of the input and the
bundle alone: the same image gets the same probabilities, decision and log record
whether it is sent alone, inside a batch, or after a thousand other requests, so a
logged answer can be replayed. Independent noise per input would only make the answer
depend on its neighbours in a batch.

Training (the variational ELBO) still draws independent noise per row, from an
optional `torch.Generator` the model holds: None draws from torch's global RNG. A
generator may live on another device than the activations (a CPU generator with a GPU
model), so draws happen on the generator's device and are moved afterwards.
"""

from __future__ import annotations

import torch


def seeded_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with `seed`, or None (global RNG) when `seed` is None."""
    return None if seed is None else torch.Generator().manual_seed(int(seed))


#: The seed of a bundle that records none: inference is reproducible either way.
DEFAULT_SEED = 0


def call_generator(seed: int | None, stream: int = 0) -> torch.Generator:
    """A CPU generator restarted for one inference call: the same draws at every call.

    `stream` separates the draws of different layers (a variational network draws each
    layer's weights from its own stream), so that no two layers reuse the same noise.
    """
    base = DEFAULT_SEED if seed is None else int(seed)
    # Modulo 2**63 only so that any integer a manifest holds is accepted (torch refuses negative
    # and huge ones). The CPU generator keeps the low 32 bits of its seed: seeds equal modulo
    # 2**32 draw alike, which is plenty for telling bundles and layers apart.
    return torch.Generator().manual_seed((base * 1_000_003 + stream) % 2**63)


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
