"""Thresholds fitted on held-out in-distribution data (scores: higher = worse).

Each threshold sits halfway between the last score it accepts and the next larger one, not
on the score itself: served scores differ from the fitting run's in the last float bits
(BatchNorm folded, another batch size), and a threshold equal to a fitted score flipped that
input's flag on such noise, so the served model missed its own recorded coverage.
"""

from __future__ import annotations

import math

import torch
from scipy.stats import beta


def _above(s: torch.Tensor, i: int) -> float:
    """A threshold just above sorted `s[i]`: halfway to the next larger score, if any."""
    larger = s[i + 1 :][s[i + 1 :] > s[i]]
    return float((s[i] + larger[0]) / 2) if len(larger) else float(s[i])


def _below(s: torch.Tensor) -> float:
    """A threshold under every sorted score `s`, by a margin float32 scores still see (1e-12
    under a float32 score rounds back onto it, and that input was accepted)."""
    return float(s[0]) - max(1e-6, abs(float(s[0])) * 1e-6)


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


def _sorted_cuts(scores: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores sorted ascending (float64), errors among the first i+1, and where a cut may fall:
    only between distinct scores, so that ties are accepted or refused together."""
    order = torch.argsort(scores)
    s = scores[order].double()
    errors = (~correct[order].bool()).double().cumsum(0)
    distinct = torch.ones_like(s, dtype=torch.bool)
    distinct[:-1] = s[1:] > s[:-1]
    return s, errors, distinct


def selective_risk_threshold(scores: torch.Tensor, correct: torch.Tensor, target_risk: float) -> tuple[float, float, float]:
    """Largest threshold whose accepted set (score <= t) has error rate <= `target_risk`.

    Returns (threshold, achieved risk, coverage). If even the most confident input
    alone is wrong, the threshold accepts nothing (coverage 0).
    """
    s, errors, distinct = _sorted_cuts(scores, correct)
    risk = errors / torch.arange(1, len(s) + 1, dtype=torch.float64)
    ok = (risk <= target_risk) & distinct
    if not ok.any():
        return _below(s), 0.0, 0.0
    i = int(torch.nonzero(ok).max())
    return _above(s, i), float(risk[i]), float((i + 1) / len(s))


def risk_upper_bound(errors: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson bound: the error rate is below it with probability >= 1 - delta
    (the binomial tail inversion B*(r, delta, n) of Geifman & El-Yaniv 2017)."""
    if n == 0 or errors >= n:
        return 1.0
    return float(beta.ppf(1 - delta, errors + 1, n - errors))


def guaranteed_risk_threshold(scores: torch.Tensor, correct: torch.Tensor, target_risk: float, confidence: float) -> tuple[float, float, float, float]:
    """Selection with guaranteed risk (SGR; Geifman & El-Yaniv, NeurIPS 2017).

    The largest threshold found whose accepted set's error rate is at most `target_risk` with
    probability >= `confidence` over the draw of the fitting data: a binary search over the
    cut points with at most k = ceil(log2(cuts + 1)) tests, each bounded at (1 - confidence) / k, so that
    every bound tested holds at once (a union bound). `selective_risk_threshold` only meets
    the target on the fitting data, and its test risk lands on either side of it.

    Returns (threshold, achieved risk, coverage, risk bound); accepts nothing when no cut passes.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    s, errors, distinct = _sorted_cuts(scores, correct)
    cuts = torch.nonzero(distinct).flatten().tolist()
    k = math.ceil(math.log2(len(cuts) + 1))  # the most steps a binary search over them takes
    delta = (1.0 - confidence) / k
    lo, hi, best = 0, len(cuts) - 1, None
    for _ in range(k):
        if lo > hi:  # the search has ended (every cut above the last one tested passed or failed)
            break
        mid = (lo + hi + 1) // 2
        i = cuts[mid]
        bound = risk_upper_bound(int(errors[i]), i + 1, delta)
        if bound <= target_risk:
            best, lo = (i, bound), mid + 1
        else:
            hi = mid - 1
    if best is None:
        return _below(s), 0.0, 0.0, 1.0
    i, bound = best
    return _above(s, i), float(errors[i]) / (i + 1), (i + 1) / len(s), bound
