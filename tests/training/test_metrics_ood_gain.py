"""The paired bootstrap interval of an AUROC gain (training.metrics.auroc_gain)."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from training.metrics import auroc_gain


def _scores(n: int, shift: float, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # OOD scores: higher = more OOD; the OOD set sits `shift` above the ID set.
    return torch.randn(n, generator=gen) * noise, shift + torch.randn(n, generator=gen) * noise


def test_the_gain_is_the_difference_of_the_two_aurocs() -> None:
    gen = torch.Generator().manual_seed(0)
    id_a, ood_a = _scores(300, 1.0, 1.0, gen)
    id_b, ood_b = _scores(300, 0.5, 1.0, gen)
    y = [1] * 300 + [0] * 300
    expected = 100 * (roc_auc_score(y, torch.cat([-id_a, -ood_a])) - roc_auc_score(y, torch.cat([-id_b, -ood_b])))
    g = auroc_gain(id_a, ood_a, id_b, ood_b, n_resamples=300)
    assert g["delta_auroc"] == pytest.approx(expected)
    assert g["ci95_low"] < g["delta_auroc"] < g["ci95_high"]


def test_a_clearly_better_score_has_an_interval_above_zero() -> None:
    gen = torch.Generator().manual_seed(1)
    id_a, ood_a = _scores(500, 3.0, 1.0, gen)  # AUROC ~98
    noise = torch.randn(1000, generator=gen) * 2.0
    id_b, ood_b = id_a + noise[:500], ood_a + noise[500:]  # the same score, blurred: AUROC ~80
    g = auroc_gain(id_a, ood_a, id_b, ood_b, n_resamples=300)
    assert g["ci95_low"] > 5.0


def test_pairing_keeps_the_interval_of_nearly_equal_scores_narrow() -> None:
    # b is a with a tiny perturbation: unpaired resampling would give each AUROC its own
    # sampling error (several points at n = 400); paired, the difference barely moves.
    gen = torch.Generator().manual_seed(2)
    id_a, ood_a = _scores(400, 1.0, 1.0, gen)
    id_b, ood_b = id_a + 0.01 * torch.randn(400, generator=gen), ood_a + 0.01 * torch.randn(400, generator=gen)
    g = auroc_gain(id_a, ood_a, id_b, ood_b, n_resamples=300)
    assert g["ci95_high"] - g["ci95_low"] < 0.5


def test_identical_scores_gain_nothing() -> None:
    gen = torch.Generator().manual_seed(3)
    id_a, ood_a = _scores(200, 1.0, 1.0, gen)
    g = auroc_gain(id_a, ood_a, id_a.clone(), ood_a.clone(), n_resamples=100)
    assert g == {"delta_auroc": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}
