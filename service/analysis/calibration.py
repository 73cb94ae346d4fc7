"""Calibration on requests with feedback: ECE, reliability bins, selective risk.

The ECE follows training/metrics.py (torchmetrics' `multiclass_calibration_error`, l1,
15 equal-width bins on the top-1 confidence; a confidence of exactly 1.0 falls in a bin
of its own there, and here too), re-implemented in numpy because the service may not
import training and needs the per-bin figures anyway. A test checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15


@dataclass(frozen=True)
class Bin:
    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


def _slots(confidence: np.ndarray, bins: int) -> np.ndarray:
    # Same as torch.bucketize(conf, linspace(0, 1, bins + 1), right=True) - 1.
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1), confidence, side="right") - 1


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error as a fraction in [0, 1]."""
    if len(confidence) == 0:
        return float("nan")
    slot = _slots(confidence, bins)
    n = np.bincount(slot, minlength=bins + 1).astype(np.float64)
    conf = np.bincount(slot, weights=confidence, minlength=bins + 1)
    acc = np.bincount(slot, weights=correct.astype(np.float64), minlength=bins + 1)
    used = n > 0
    gap = np.abs(acc[used] / n[used] - conf[used] / n[used])
    return float((gap * n[used]).sum() / n.sum())


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[Bin]:
    """Per-bin mean confidence and accuracy for the diagram; 1.0 joins the top bin here."""
    slot = np.minimum(_slots(confidence, bins), bins - 1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for b in range(bins):
        m = slot == b
        k = int(m.sum())
        conf = float(confidence[m].mean()) if k else None
        acc = float(correct[m].mean()) if k else None
        out.append(Bin(float(edges[b]), float(edges[b + 1]), k, conf, acc))
    return out


def selective_risk(correct: np.ndarray, accepted: np.ndarray) -> tuple[float | None, float | None]:
    """(risk, coverage): the error rate among accepted predictions, and the accepted share."""
    if len(correct) == 0:
        return None, None
    k = int(accepted.sum())
    risk = float((~correct[accepted]).sum() / k) if k else None
    return risk, k / len(correct)
