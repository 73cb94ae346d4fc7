"""Temperature scaling and the uncertainty split, on hand-made logits (no training)."""

from __future__ import annotations

import torch

from models.calibration import fit_temperature, predictive_nll
from models.uncertainty import mean_probs, predictive_log_probs, uncertainty


def _overconfident(n: int = 4000, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is right 70% of the time but claims ~100%: T must be > 1."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    wrong = torch.rand(n, generator=g) < 0.3
    pred = torch.where(wrong, (labels + 1) % k, labels)
    logits = torch.randn(n, k, generator=g)
    logits[torch.arange(n), pred] += 12.0
    return logits, labels


def test_temperature_lowers_nll_of_overconfident_model() -> None:
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert t > 2.0
    assert predictive_nll(logits[None], labels, t) < 0.5 * predictive_nll(logits[None], labels, 1.0)
    # It is a minimum: nearby temperatures are worse.
    best = predictive_nll(logits[None], labels, t)
    assert best <= predictive_nll(logits[None], labels, t * 1.2)
    assert best <= predictive_nll(logits[None], labels, t / 1.2)


def test_temperature_sharpens_underconfident_model() -> None:
    # Right 100% of the time but logits scaled down: T < 1 restores confidence.
    logits = torch.randn(2000, 10, generator=torch.Generator().manual_seed(1))
    labels = logits.argmax(-1)
    assert fit_temperature(logits * 0.1, labels) < 0.2


def test_predictive_nll_averages_probabilities_not_logits() -> None:
    samples = torch.tensor([[[10.0, 0.0]], [[0.0, 10.0]]])  # two confident, opposite samples
    nll = predictive_nll(samples, torch.tensor([0]), 1.0)
    assert torch.isclose(nll, torch.log(torch.tensor(2.0)), atol=1e-3)


def test_uncertainty_split() -> None:
    agree = torch.tensor([[[5.0, 0.0]], [[5.0, 0.0]]])
    disagree = torch.tensor([[[5.0, 0.0]], [[0.0, 5.0]]])
    u_agree, u_dis = uncertainty(agree), uncertainty(disagree)
    assert u_agree.mutual_information.item() < 1e-6
    assert u_dis.mutual_information.item() > 0.6  # close to log 2 minus the members' own entropy
    total = u_dis.expected_entropy + u_dis.mutual_information
    assert torch.allclose(total, u_dis.predictive_entropy, atol=1e-6)


def test_predictive_log_probs_is_the_log_of_the_mean_probabilities_without_underflow() -> None:
    logits = torch.randn(4, 6, 5, dtype=torch.float64) * 3
    for t in (1.0, 0.5):
        torch.testing.assert_close(predictive_log_probs(logits, t), torch.log(mean_probs(logits, t)))
    # A class every sample rules out by ~1000 logits: its mean probability is 0 in float32,
    # so log(mean_probs) is -inf, while the log-space form keeps the finite value.
    far = torch.tensor([[[0.0, -1000.0]], [[0.0, -1001.0]]])
    assert torch.isinf(torch.log(mean_probs(far))[0, 1])
    expected = torch.logsumexp(torch.tensor([-1000.0, -1001.0], dtype=torch.float64), 0) - torch.log(torch.tensor(2.0, dtype=torch.float64))
    assert abs(float(predictive_log_probs(far)[0, 1]) - float(expected)) < 1e-3
