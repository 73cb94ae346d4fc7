"""The papers' metrics against values worked out by hand on tiny inputs.

Each case is small enough to check with pencil and paper, and chosen so that a flipped
positive class, a swapped AUPR-In/Out or a wrong ECE binning gives another number.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from service.policy import decide
from training import metrics


def test_classification_metrics_by_hand() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 1])  # the third is wrong
    assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)
    assert metrics.nll(probs, labels) == pytest.approx(-(math.log(0.9) + math.log(0.7) + math.log(0.4)) / 3)
    # Brier: sum over classes of squared error, mean over inputs.
    assert metrics.brier(probs, labels) == pytest.approx((0.02 + 0.18 + 0.72) / 3)
    # ECE, 15 equal-width bins of the max probability: 0.9, 0.7 and 0.6 fall in three
    # different bins, each holding one input: |conf - acc| = 0.1, 0.3, 0.6.
    assert metrics.ece(probs, labels) == pytest.approx((0.1 + 0.3 + 0.6) / 3, abs=1e-6)


def test_ece_pools_inputs_of_one_bin() -> None:
    # Two inputs at confidence 0.9 in one bin, one right and one wrong: |0.9 - 0.5| = 0.4
    # for the bin (a per-input mean would say (0.1 + 0.9) / 2 = 0.5).
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    assert metrics.ece(probs, torch.tensor([0, 1])) == pytest.approx(0.4, abs=1e-6)


def test_misclassification_metrics_by_hand() -> None:
    # Failure scores (higher = more likely wrong) of 4 correct and 2 wrong predictions.
    score = torch.tensor([0.1, 0.2, 0.3, 0.7, 0.4, 0.8])
    correct = torch.tensor([True, True, True, True, False, False])
    m = metrics.misclassification(score, correct)
    # AUROC (correct positive): of the 8 (correct, wrong) pairs only (0.7, 0.4) is misordered.
    assert m["auroc"] == pytest.approx(100 * 7 / 8)
    # AUPR-Error (errors positive, ranked by score): 0.8 wrong (P=1), 0.7 right, 0.4 wrong (P=2/3).
    assert m["aupr_error"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    # AUPR-Success (correct positive, ranked by -score): 0.1, 0.2, 0.3 right (P=1), 0.4 wrong, 0.7 right (P=4/5).
    assert m["aupr_success"] == pytest.approx(100 * (1 + 1 + 1 + 4 / 5) / 4)
    # 95 % of the correct ones accepted needs all 4, so the threshold must pass score 0.7,
    # which also passes the error at 0.4: FPR = 1 / 2.
    assert m["fpr95"] == pytest.approx(50.0)
    # AURC: risks after accepting 1..6 inputs in order of confidence: 0, 0, 0, 1/4, 1/5, 2/6.
    assert m["aurc"] == pytest.approx(1000 * (1 / 4 + 1 / 5 + 2 / 6) / 6)


def test_ood_detection_metrics_by_hand() -> None:
    # OOD scores (higher = more OOD): 3 in-distribution, 2 OOD inputs.
    id_score = torch.tensor([0.1, 0.2, 0.6])
    ood_score = torch.tensor([0.5, 0.9])
    m = metrics.ood_detection(id_score, ood_score)
    # ID is positive: of the 6 (ID, OOD) pairs only (0.6, 0.5) is misordered.
    assert m["auroc"] == pytest.approx(100 * 5 / 6)
    # 95 % TPR needs all 3 ID inputs, so the threshold passes 0.6 and the OOD 0.5: FPR = 1/2.
    assert m["fpr95"] == pytest.approx(50.0)
    # Best threshold: pass 0.1 and 0.2 only: 0.5 * (1/3) + 0.5 * 0 = 1/6.
    assert m["detection_error"] == pytest.approx(100 / 6)
    # AUPR-In (ID positive, ranked by -score): 0.1, 0.2 ID (P=1), 0.5 OOD, 0.6 ID (P=3/4).
    assert m["aupr_in"] == pytest.approx(100 * (1 + 1 + 3 / 4) / 3)
    # AUPR-Out (OOD positive, ranked by score): 0.9 OOD (P=1), 0.6 ID, 0.5 OOD (P=2/3).
    assert m["aupr_out"] == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_fpr_at_tpr_is_not_the_tpr_at_fpr() -> None:
    pos, neg = np.array([5.0, 4.0, 3.0, 2.0, 1.0] * 4), np.array([4.5, 0.0])
    # 95 % of the 20 positives is 19: the threshold must go down to 1.0, which lets the
    # negative at 4.5 through (FPR 1/2). Read the other way round (TPR at 5 % FPR, or the
    # first threshold with TPR >= 95 % taken from the top), it would be 0 or 0.8.
    assert metrics.fpr_at_tpr(pos, neg) == pytest.approx(0.5)


def test_fpr_at_tpr_keeps_the_thresholds_sklearn_drops_as_collinear() -> None:
    # Tied scores: at threshold 1, 20 of 21 positives (95.2 %) and 5 of 6 negatives pass.
    # sklearn's default drop_intermediate removes that point (it lies on a straight segment),
    # and the next one, threshold 0, has FPR 1.
    pos = np.array([5, 3, 6, 4, 2, 3, 3, 0, 4, 2, 5, 1, 3, 4, 2, 2, 5, 3, 5, 2, 6], dtype=float)
    neg = np.array([2, 1, 3, 3, 2, 0], dtype=float)
    assert metrics.fpr_at_tpr(pos, neg) == pytest.approx(5 / 6)


@pytest.mark.parametrize(
    ("ood", "failure", "expected"),
    [(True, True, "reject_ood"), (True, False, "reject_ood"), (False, True, "abstain"), (False, False, "accept")],
)
def test_the_decision_order(ood: bool, failure: bool, expected: str) -> None:
    # OOD first: a non-digit's failure score means nothing, so it must never be an "abstain".
    assert decide(ood, failure) == expected


def test_prediction_set_metrics_by_hand() -> None:
    sets = torch.tensor([[True, False, False], [True, True, False], [False, False, True], [True, True, True]])
    labels = torch.tensor([0, 2, 2, 1])  # covered, missed, covered, covered
    got = metrics.prediction_sets(sets, labels)
    assert got == {"coverage": 75.0, "mean_size": 1.75, "singletons": 50.0}
