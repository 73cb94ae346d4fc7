"""Conformal coverage with a real (tiny) trained model on held-out MNIST digits.

The synthetic test (test_conformal_thresholds.py) checks the quantile on a perfectly
calibrated toy; this one checks the bundle's own quantile and the served sets, and a
two-sided bound that a quantile at the wrong level fails.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.bundle import load_bundle
from models.conformal import aps_scores, aps_sets, conformal_quantile
from models.pipeline import Pipeline
from models.uncertainty import mean_probs
from training.data import load_mnist

N = 4000  # held-out MNIST test digits used (a random subset: the test set's halves differ)


def test_conformal_coverage_on_held_out_mnist(tiny_bundle: Path, data_dir: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    test = load_mnist(data_dir, train=False)
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:N]
    with torch.no_grad():  # the served probabilities: calibrated, sample-averaged
        probs = mean_probs(bundle.model.sample_logits(Pipeline(bundle).normalise(test.x[idx])), bundle.manifest.temperature)
    y = test.y[idx]
    # The served sets with the bundle's quantile (calibrated on its own `cal` split, alpha 0.01):
    # at least 1 - alpha up to sampling noise (a conditional std of ~0.005 for 500 calibration
    # images); a quantile for alpha = 0.05 would cover about 95% and fail.
    alpha = bundle.manifest.conformal.alpha
    served = aps_sets(probs, bundle.manifest.conformal.qhat)
    assert served[torch.arange(len(y)), y].float().mean().item() >= 1 - alpha - 0.015
    # Two-sided, with randomised scores: calibrate on a random half of the test set, check the
    # other (the order is already random).
    cal, held = torch.arange(N // 2), torch.arange(N // 2, N)
    gen = torch.Generator().manual_seed(1)
    s_cal = aps_scores(probs[cal], y[cal], torch.rand(len(cal), generator=gen))
    s_held = aps_scores(probs[held], y[held], torch.rand(len(held), generator=gen))
    for a in (0.1, 0.2):
        cover = (s_held <= conformal_quantile(s_cal, a)).float().mean().item()
        # Guarantee: 1 - a <= coverage <= 1 - a + 1/(n+1); +-0.03 is ~3 sampling stds at a = 0.1.
        assert 1 - a - 0.03 <= cover <= 1 - a + 1 / (len(cal) + 1) + 0.03, (a, cover)
    wrong = (s_held <= conformal_quantile(s_cal, 0.2)).float().mean().item()
    assert wrong < 1 - 0.1 - 0.03  # the 0.8 quantile does not pass for 0.9
