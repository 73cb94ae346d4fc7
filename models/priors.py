"""Weight priors for Bayes by Backprop (Blundell et al. 2015), with a JSON form for the manifest.

`GaussianPrior` admits a closed-form KL to a Gaussian posterior; Blundell's
`ScaleMixturePrior` does not, so the layers estimate that KL by Monte Carlo.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def normal_log_prob(w: torch.Tensor, sigma: float) -> torch.Tensor:
    return -math.log(sigma) - LOG_SQRT_2PI - 0.5 * (w / sigma) ** 2


@dataclass(frozen=True)
class GaussianPrior:
    """``p(w) = N(0, sigma^2)``; the KL to the posterior has a closed form."""

    sigma: float = 1.0

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        return normal_log_prob(w, self.sigma)


@dataclass(frozen=True)
class ScaleMixturePrior:
    """Blundell's ``pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2)``, sigma1 > sigma2.

    Defaults from the paper's grid (-log sigma1 = 0, -log sigma2 = 6, pi = 1/2): a wide
    component for the weights that matter and a spike near zero for the rest.
    """

    pi: float = 0.5
    sigma1: float = 1.0
    sigma2: float = math.exp(-6.0)

    def __post_init__(self) -> None:
        if not 0.0 < self.pi <= 1.0:
            raise ValueError(f"pi must be in (0, 1], got {self.pi}")

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        # log-sum-exp of the two weighted components: stable for tiny sigma2; pi = 1 gives -inf + ... = N(0, sigma1).
        log_1mpi = math.log(1.0 - self.pi) if self.pi < 1.0 else -math.inf
        a = math.log(self.pi) + normal_log_prob(w, self.sigma1)
        return torch.logaddexp(a, log_1mpi + normal_log_prob(w, self.sigma2))


Prior = GaussianPrior | ScaleMixturePrior


def build_prior(spec: dict[str, Any] | None) -> Prior:
    """A prior from its JSON form: ``{"kind": "gaussian", "sigma": 1}`` or ``{"kind": "scale_mixture", ...}``."""
    spec = dict(spec or {"kind": "gaussian"})
    kind = spec.pop("kind", "gaussian")
    kinds: dict[str, type[GaussianPrior | ScaleMixturePrior]] = {
        "gaussian": GaussianPrior,
        "scale_mixture": ScaleMixturePrior,
    }
    if kind not in kinds:
        raise TypeError(f"unknown prior kind {kind!r}; known: {sorted(kinds)}")
    return kinds[kind](**spec)


def prior_spec(prior: Prior) -> dict[str, Any]:
    """The JSON form `build_prior` reads back, e.g. ``{"kind": "gaussian", "sigma": 1.0}``."""
    kind = "gaussian" if isinstance(prior, GaussianPrior) else "scale_mixture"
    return {"kind": kind, **asdict(prior)}
