"""Split conformal prediction with Adaptive Prediction Sets (APS; Romano et al. 2020).

Non-conformity of (x, y): the total probability mass of the classes ranked at or
above y (randomised at y for exact coverage). The quantile of the calibration scores at
level ceil((n+1)(1-alpha))/n gives sets with coverage >= 1 - alpha (Angelopoulos & Bates).
"""

from __future__ import annotations

import math

import torch


def aps_scores(probs: torch.Tensor, labels: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
    """Conformity scores ``[N]`` of the true labels; `u` in [0,1) randomises the tie-break."""
    order = torch.argsort(probs, dim=-1, descending=True)
    sorted_p = probs.gather(-1, order)
    cum = sorted_p.cumsum(-1)
    rank = (order == labels[:, None]).float().argmax(-1)
    cum_at = cum.gather(-1, rank[:, None]).squeeze(-1)
    p_at = sorted_p.gather(-1, rank[:, None]).squeeze(-1)
    if u is None:
        return cum_at
    return cum_at - u * p_at


def conformal_quantile(scores: torch.Tensor, alpha: float) -> float:
    """The finite-sample-corrected (1 - alpha) quantile of calibration scores.

    With fewer than 1/alpha - 1 scores the corrected level exceeds 1: no finite
    threshold guarantees the coverage, so the quantile is +inf (every class is kept),
    rather than the largest score, which would silently promise coverage it lacks.
    """
    n = scores.numel()
    k = math.ceil((n + 1) * (1 - alpha))  # the k-th smallest score, 1-based
    if k > n:
        return math.inf
    return float(torch.sort(scores.flatten().double()).values[k - 1])


def aps_sets(probs: torch.Tensor, qhat: float) -> torch.Tensor:
    """Boolean mask ``[B, K]``: the smallest top-ranked classes whose mass reaches qhat.

    Deterministic variant (no randomisation at serving time) so that the same image
    always gets the same set; it includes the boundary class, which only adds coverage.
    """
    order = torch.argsort(probs, dim=-1, descending=True)
    cum = probs.gather(-1, order).cumsum(-1)
    # Keep class at rank r if the mass strictly above it is still below qhat.
    keep_sorted = (cum - probs.gather(-1, order)) < qhat
    keep_sorted[:, 0] = True
    mask = torch.zeros_like(keep_sorted)
    mask.scatter_(-1, order, keep_sorted)
    return mask
