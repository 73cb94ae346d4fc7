"""Bayes by Backprop layers (Blundell et al. 2015, "Weight Uncertainty in Neural Networks").

Each weight has a Gaussian posterior ``N(mu, sigma^2)`` with ``sigma = softplus(rho)``
(keeps sigma positive without constraints). Layers keep `nn.Linear`/`nn.Conv2d`'s
signature and return a plain tensor; `kl()` is a pure method that `kl_divergence`
collects, so layers compose in `nn.Sequential` (the torch-uncertainty design).

Forward uses the local reparameterisation trick (Kingma, Salimans & Welling 2015):
instead of sampling a weight matrix per batch, sample the pre-activations, which are
Gaussian given the input: mean ``op(x, mu)``, variance ``op(x^2, sigma^2)``. Every row
then gets independent noise (lower-variance gradients, and K posterior samples are one
batched forward over the input repeated K times). For convolutions the outputs at
different positions are treated as independent, which matches each output's marginal
but drops their correlation through the shared kernel (as in Kingma et al.'s and
Molchanov et al.'s conv variants).

Inference draws whole weights instead (`draw`, then `forward_drawn`): K weight tensors
per layer, shared by every input of the batch and drawn from the bundle's seed at each
call (`models.sampling`). That is Blundell et al.'s predictive exactly, the kernel's
correlation across positions included, and it makes an input's answer independent of
its batch. The local trick's advantage, lower-variance gradients, only matters in
training.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.priors import (
    LOG_SQRT_2PI,
    GaussianPrior,
    Prior,
    ScaleMixturePrior,
    build_prior,
    prior_spec,
)
from models.sampling import randn

__all__ = [
    "Conv2dVariational",
    "GaussianPrior",
    "LinearVariational",
    "Prior",
    "ScaleMixturePrior",
    "VariationalLayer",
    "build_prior",
    "kl_divergence",
    "prior_spec",
]


class VariationalLayer(nn.Module):
    """Shared parameters, KL and sampling of a layer with a factorised Gaussian posterior."""

    def _init_posterior(
        self, shape: tuple[int, ...], fan_in: int, bias: bool, prior: Prior | None, rho_init: float
    ) -> None:
        self.prior: Prior = prior or GaussianPrior()
        self.generator: torch.Generator | None = None
        # mu as nn.Linear/Conv2d initialise their weights (kaiming-uniform, bound 1/sqrt(fan_in)),
        # which trains well with BatchNorm; a small sigma (softplus(-5) ~ 0.0067) starts near the MAP.
        bound = 1.0 / math.sqrt(fan_in)
        self.weight_mu = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.weight_rho = nn.Parameter(torch.full(shape, rho_init))
        self.bias_mu = nn.Parameter(torch.empty(shape[0]).uniform_(-bound, bound)) if bias else None
        self.bias_rho = nn.Parameter(torch.full((shape[0],), rho_init)) if bias else None

    def _pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        pairs = [(self.weight_mu, F.softplus(self.weight_rho))]
        if self.bias_mu is not None and self.bias_rho is not None:
            pairs.append((self.bias_mu, F.softplus(self.bias_rho)))
        return pairs

    def draw(self, k: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """k whole weight tensors from q, ``[k, *weight.shape]``, and k biases ``[k, out]`` (or None)."""
        draws = [mu + sigma * randn((k, *mu.shape), mu, generator) for mu, sigma in self._pairs()]
        return draws[0], (draws[1] if len(draws) > 1 else None)

    def kl(self) -> torch.Tensor:
        """KL(q || p) summed over this layer's weights and biases (a scalar).

        Closed form for a Gaussian prior; for the scale mixture (no closed form) a
        one-sample Monte Carlo estimate ``log q(w) - log p(w)``, w ~ q (Blundell et al.).
        """
        total = self.weight_mu.new_zeros(())
        for mu, sigma in self._pairs():
            if isinstance(self.prior, GaussianPrior):
                sp = self.prior.sigma
                total = total + (math.log(sp) - torch.log(sigma) + (sigma**2 + mu**2) / (2 * sp**2) - 0.5).sum()
            else:
                eps = randn(tuple(mu.shape), mu, self.generator)
                w = mu + sigma * eps
                log_q = -torch.log(sigma) - LOG_SQRT_2PI - 0.5 * eps**2
                total = total + (log_q - self.prior.log_prob(w)).sum()
        return total

    def _lrt(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        # clamp_min: zero inputs (ReLU, padding) give zero variance, where sqrt's gradient is infinite.
        return mean + var.clamp_min(1e-16).sqrt() * randn(tuple(mean.shape), mean, self.generator)


class LinearVariational(VariationalLayer):
    """Bayesian `nn.Linear`: ``[..., in] -> [..., out]``, one posterior sample per row."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, prior: Prior | None = None, rho_init: float = -5.0
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_posterior((out_features, in_features), in_features, bias, prior, rho_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (w_mu, w_sig), *b = self._pairs()
        b_mu, b_var = (b[0][0], b[0][1] ** 2) if b else (None, None)
        return self._lrt(F.linear(x, w_mu, b_mu), F.linear(x**2, w_sig**2, b_var))

    def forward_drawn(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Row k of `x` ``[k, B, in]`` through draw k of `draw`: ``[k, B, out]``."""
        out = torch.bmm(x, weight.transpose(1, 2))
        return out if bias is None else out + bias.unsqueeze(1)


class Conv2dVariational(VariationalLayer):
    """Bayesian `nn.Conv2d` (square kernels): ``[B, C, H, W] -> [B, out, H', W']``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        prior: Prior | None = None,
        rho_init: float = -5.0,
    ) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self._init_posterior(shape, in_channels * kernel_size**2, bias, prior, rho_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (w_mu, w_sig), *b = self._pairs()
        b_mu, b_var = (b[0][0], b[0][1] ** 2) if b else (None, None)
        mean = F.conv2d(x, w_mu, b_mu, self.stride, self.padding)
        return self._lrt(mean, F.conv2d(x**2, w_sig**2, b_var, self.stride, self.padding))

    def forward_drawn(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """`x` through each of the k drawn kernels of `draw`: ``[k, B, out, H', W']``.

        `x` is ``[B, C, H, W]`` (one input for every draw: the k kernels are stacked along
        the output channels, one convolution) or ``[k, B, C, H, W]`` (row k through draw
        k: a grouped convolution with k groups, again one call).
        """
        k, out_channels = weight.shape[:2]
        flat_bias = None if bias is None else bias.flatten()
        if x.dim() == 4:
            out = F.conv2d(x, weight.flatten(0, 1), flat_bias, self.stride, self.padding)
        else:
            grouped = x.transpose(0, 1).flatten(1, 2)  # [B, k*C, H, W]
            out = F.conv2d(grouped, weight.flatten(0, 1), flat_bias, self.stride, self.padding, groups=k)
        return out.view(out.shape[0], k, out_channels, *out.shape[2:]).transpose(0, 1)


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """Sum of `kl()` over every variational layer of `model` (a scalar)."""
    terms = [m.kl() for m in model.modules() if isinstance(m, VariationalLayer)]
    if not terms:
        raise ValueError("model has no variational layers")
    return torch.stack(terms).sum()
