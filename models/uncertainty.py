"""Turning logit samples ``[S, B, K]`` into probabilities and the uncertainty split.

Predictive entropy H[E p] = expected entropy E H[p] (aleatoric) + mutual information
(epistemic), as in Gal's thesis and Depeweg et al.; with S=1 the mutual information is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Uncertainty:
    """Per-input figures, each of shape ``[B]`` (probs ``[B, K]``)."""

    probs: torch.Tensor
    predictive_entropy: torch.Tensor
    expected_entropy: torch.Tensor
    mutual_information: torch.Tensor


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def mean_probs(logit_samples: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Average of the per-sample softmax ``[S, B, K] -> [B, K]`` (not softmax of the mean)."""
    return torch.softmax(logit_samples / temperature, dim=-1).mean(0)


def sample_probs_of(sample_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's probability of each input's class ``labels[b]``: ``[S, B, K], [B] -> [S, B]``."""
    return sample_probs.gather(2, labels.view(1, -1, 1).expand(sample_probs.shape[0], -1, 1)).squeeze(2)


def predictive_log_probs(logit_samples: torch.Tensor, temperature: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``log mean_probs`` ``[S, B, K] -> [B, K]``, as a logsumexp of log-softmaxes: no probability underflows to log 0."""
    log_p = torch.log_softmax(logit_samples / temperature, dim=-1)
    return torch.logsumexp(log_p, dim=0) - math.log(logit_samples.shape[0])


def uncertainty(logit_samples: torch.Tensor, temperature: float = 1.0) -> Uncertainty:
    """Probabilities and the entropy decomposition of ``[S, B, K]`` logit samples."""
    sample_probs = torch.softmax(logit_samples / temperature, dim=-1)
    probs = sample_probs.mean(0)
    total = _entropy(probs)
    expected = _entropy(sample_probs).mean(0)
    # Clamp: floating error can make the difference a hair below zero.
    return Uncertainty(probs, total, expected, (total - expected).clamp_min(0.0))
