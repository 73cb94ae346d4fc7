"""Drift: do recent confidence and OOD scores still look like the validation data?

Two-sample Kolmogorov-Smirnov (SciPy) against the samples the bundle keeps from its
validation set (manifest `reference`). With thousands of requests even a harmless shift
is "significant", so a shift counts only when it is both significant (p < 0.01) and
large enough to matter (KS statistic >= 0.1, i.e. the two CDFs differ by 10 points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp

MIN_RECENT = 50
ALPHA = 0.01
MIN_EFFECT = 0.1


@dataclass(frozen=True)
class Comparison:
    statistic: float
    p_value: float
    n_recent: int
    n_reference: int
    recent_median: float
    reference_median: float
    drifted: bool


def compare(recent: np.ndarray, reference: np.ndarray) -> Comparison | None:
    if len(recent) < MIN_RECENT or len(reference) == 0:
        return None
    res = ks_2samp(recent, reference)
    stat, p = float(res.statistic), float(res.pvalue)
    med_r, med_ref = float(np.median(recent)), float(np.median(reference))
    return Comparison(stat, p, len(recent), len(reference), med_r, med_ref, p < ALPHA and stat >= MIN_EFFECT)


def verdict(confidence: Comparison | None, ood: Comparison | None, n_recent: int, has_reference: bool, served: str) -> str:
    """One plain sentence an operator can act on; `served` names the bundle whose reference
    and whose predictions are compared (rows of other models or versions are not counted)."""
    if not has_reference:
        return "no validation reference for this model in the served bundle: drift cannot be judged"
    if confidence is None or ood is None:
        return f"not enough recent predictions of {served} ({n_recent}, need {MIN_RECENT}) to judge drift"
    parts = []
    if ood.drifted:
        way = "higher" if ood.recent_median > ood.reference_median else "lower"
        parts.append(f"OOD scores are {way} than on validation data (KS D={ood.statistic:.2f}): inputs have changed")
    if confidence.drifted:
        way = "less" if confidence.recent_median < confidence.reference_median else "more"
        parts.append(f"the model is {way} confident than on validation data (KS D={confidence.statistic:.2f})")
    if not parts:
        return "no evidence of drift: recent confidence and OOD scores look like the validation data"
    return "drift: " + "; ".join(parts)
