"""Thresholds fitted on held-out in-distribution data (scores: higher = worse).

Each threshold sits halfway between the last score it accepts and the next larger one, not
on the score itself: served scores differ from the fitting run's in the last float bits
(BatchNorm folded, another batch size), and a threshold equal to a fitted score flipped that
input's flag on such noise, so the served model missed its own recorded coverage.
"""

from __future__ import annotations

import math

import torch


def _above(s: torch.Tensor, i: int) -> float:
    """A threshold just above sorted `s[i]`: halfway to the next larger score, if any."""
    larger = s[i + 1 :][s[i + 1 :] > s[i]]
    return float((s[i] + larger[0]) / 2) if len(larger) else float(s[i])


def pass_rate_threshold(scores: torch.Tensor, pass_rate: float) -> float:
    """Smallest threshold t such that a fraction >= `pass_rate` of `scores` has score <= t.

    `flagged` is ``score > t``, so on the fitting data at most ``1 - pass_rate`` is flagged.
    """
    if not 0.0 < pass_rate <= 1.0:
        raise ValueError("pass_rate must be in (0, 1]")
    s = torch.sort(scores.flatten().double()).values
    # round() first: 0.07 * 100 is 7.000000000000001 in floating point, whose ceil would
    # pass one input more than asked.
    k = max(0, min(len(s) - 1, math.ceil(round(pass_rate * len(s), 9)) - 1))
    return _above(s, k)


def selective_risk_threshold(scores: torch.Tensor, correct: torch.Tensor, target_risk: float) -> tuple[float, float, float]:
    """Largest threshold whose accepted set (score <= t) has error rate <= `target_risk`.

    Returns (threshold, achieved risk, coverage). If even the most confident input
    alone is wrong, the threshold accepts nothing (coverage 0).
    """
    order = torch.argsort(scores)
    s = scores[order].double()
    errors = (~correct[order].bool()).double().cumsum(0)
    n = torch.arange(1, len(s) + 1, dtype=torch.float64)
    risk = errors / n
    # Only cut between distinct score values: ties are accepted or refused together.
    distinct = torch.ones_like(s, dtype=torch.bool)
    distinct[:-1] = s[1:] > s[:-1]
    ok = (risk <= target_risk) & distinct
    if not ok.any():
        return float(s[0]) - 1e-12, 0.0, 0.0
    i = int(torch.nonzero(ok).max())
    return _above(s, i), float(risk[i]), float((i + 1) / len(s))
