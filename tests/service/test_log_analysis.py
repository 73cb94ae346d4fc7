"""The summary's statistics: ECE as training computes it, and a drift verdict that means something."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from service.analysis.calibration import ece, reliability, selective_risk
from service.analysis.drift import compare, verdict


def test_ece_matches_torchmetrics_including_confidence_one() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 10, generator=g) * 4
    logits[:300, 0] = 60.0  # float32 softmax of these is exactly 1.0: the edge torchmetrics bins apart
    probs = logits.softmax(-1)
    labels = torch.where(torch.rand(2000, generator=g) < 0.8, probs.argmax(-1), torch.randint(0, 10, (2000,), generator=g))
    conf, pred = probs.max(-1)
    correct = (pred == labels).numpy()
    assert (conf == 1.0).sum() >= 300
    expected = float(multiclass_calibration_error(probs, labels, num_classes=10, n_bins=15, norm="l1"))
    assert abs(ece(conf.double().numpy(), correct) - expected) < 1e-5
    bins = reliability(conf.double().numpy(), correct)
    assert len(bins) == 15 and sum(b.count for b in bins) == 2000 and bins[-1].count >= 300


def test_selective_risk() -> None:
    correct = np.array([True, True, False, False, True])
    accepted = np.array([True, True, True, False, False])
    risk, coverage = selective_risk(correct, accepted)
    assert (risk, coverage) == (1 / 3, 3 / 5)


def test_drift_verdicts() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 1.0, 2000)
    same = compare(rng.normal(0.0, 1.0, 500), ref)
    shifted = compare(rng.normal(1.0, 1.0, 500), ref)
    assert same is not None and not same.drifted
    assert shifted is not None and shifted.drifted and shifted.p_value < 1e-6
    assert verdict(same, same, 500, True, "m/1").startswith("no evidence of drift")
    words = verdict(same, shifted, 500, True, "m/1")
    assert words.startswith("drift:") and "OOD scores are higher" in words
    assert verdict(compare(ref[:10], ref), None, 10, True, "m/1") == "not enough recent predictions of m/1 (10, need 50) to judge drift"
    assert "no validation reference" in verdict(None, None, 0, False, "m/1")
