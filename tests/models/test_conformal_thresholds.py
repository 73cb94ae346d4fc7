"""Conformal coverage and threshold fitting, on synthetic data where the truth is known."""

from __future__ import annotations

import math

import pytest
import torch

from models.conformal import aps_scores, aps_sets, conformal_quantile
from models.thresholds import (
    guaranteed_risk_threshold,
    pass_rate_threshold,
    risk_upper_bound,
    selective_risk_threshold,
)


def _calibrated(n: int, seed: int, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities from a Dirichlet, labels drawn from them: a perfectly calibrated model."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.distributions.Dirichlet(torch.full((k,), 0.3)).sample((n,))
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return probs, labels


def test_aps_coverage_on_held_out_data() -> None:
    torch.manual_seed(0)
    alpha = 0.1
    cal_p, cal_y = _calibrated(3000, 1)
    test_p, test_y = _calibrated(6000, 2)
    u = torch.rand(len(cal_y), generator=torch.Generator().manual_seed(3))
    qhat = conformal_quantile(aps_scores(cal_p, cal_y, u), alpha)
    sets = aps_sets(test_p, qhat)
    coverage = sets[torch.arange(len(test_y)), test_y].float().mean().item()
    # Valid (>= 1 - alpha up to sampling noise) and not trivially the full label set.
    assert coverage >= 1 - alpha - 0.015
    assert coverage <= 1 - alpha + 0.05
    assert sets.sum(1).float().mean() < 8
    # A wrong quantile (here alpha doubled) visibly misses the target.
    wrong = aps_sets(test_p, conformal_quantile(aps_scores(cal_p, cal_y, u), 2 * alpha))
    assert wrong[torch.arange(len(test_y)), test_y].float().mean().item() < 1 - alpha - 0.015


def test_aps_set_is_top_ranked_prefix() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert aps_sets(probs, 0.6).tolist() == [[True, True, False, False]]
    assert aps_sets(probs, 0.1).tolist() == [[True, False, False, False]]
    assert aps_sets(probs, 0.96).tolist() == [[True, True, True, True]]


def test_conformal_quantile_finite_sample_correction() -> None:
    scores = torch.arange(1, 101, dtype=torch.float64) / 100  # 0.01 .. 1.00
    # ceil(101 * 0.9) / 100 = 0.91 -> the 91st smallest score.
    assert conformal_quantile(scores, 0.1) == 0.91


def test_pass_rate_threshold_gives_requested_rate() -> None:
    scores = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    for rate in (0.9, 0.95, 0.99):
        t = pass_rate_threshold(scores, rate)
        passed = int((scores <= t).sum())
        assert round(rate * len(scores)) <= passed <= round(rate * len(scores)) + 10


def test_selective_risk_threshold() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(5000, generator=g)
    # Errors get likelier as the score rises.
    correct = torch.rand(5000, generator=g) > scores**3
    t, risk, coverage = selective_risk_threshold(scores, correct, 0.01)
    accepted = scores <= t
    achieved = 1 - correct[accepted].float().mean().item()
    assert achieved <= 0.01 and abs(achieved - risk) < 1e-6
    assert abs(accepted.float().mean().item() - coverage) < 1e-6
    # Largest such threshold: accepting the next input breaks the target.
    nxt = scores[scores > t].min()
    assert 1 - correct[scores <= nxt].float().mean().item() > 0.01 or coverage == 1.0


def test_too_few_calibration_scores_keep_every_class() -> None:
    # alpha = 0.1 needs the ceil((n + 1) * 0.9)-th smallest score: with n = 8 that is the
    # 9th of 8, so no finite quantile promises 90 % coverage and every class must be kept.
    scores = torch.linspace(0.1, 0.8, 8)
    assert conformal_quantile(scores, 0.1) == math.inf
    probs = torch.tensor([[0.97, 0.02, 0.01, 0.0]])
    assert bool(aps_sets(probs, math.inf).all())
    # One score more and the quantile is the largest score, finite again.
    assert conformal_quantile(torch.linspace(0.1, 0.9, 9), 0.1) == pytest.approx(0.9)


def test_pass_rate_threshold_is_not_thrown_off_by_floating_point() -> None:
    # 0.07 * 100 is 7.000000000000001 in floating point; a plain ceil would pass 8 of 100.
    scores = torch.arange(1.0, 101.0)
    t = pass_rate_threshold(scores, 0.07)
    assert int((scores <= t).sum()) == 7


def test_thresholds_do_not_flip_a_flag_on_float_noise() -> None:
    # Served scores differ from the fitting run's in the last bits: a threshold equal to a
    # fitted score flags that input (or not) by chance. Halfway to the next score, neither
    # fitted threshold moves a flag when every score is nudged by far less than the gaps.
    g = torch.Generator().manual_seed(1)
    scores = torch.randperm(4000, generator=g).double() / 4000  # gaps of 1 / 4000
    correct = torch.rand(4000, generator=g, dtype=torch.float64) > scores**3
    t_fail = selective_risk_threshold(scores, correct, 0.01)[0]
    t_ood = pass_rate_threshold(scores, 0.95)
    for t in (t_fail, t_ood):
        for nudge in (1e-7, -1e-7):
            assert torch.equal(scores + nudge > t, scores > t)
    assert int((scores <= t_ood).sum()) == 3800


def test_a_threshold_on_tied_scores_sits_halfway_to_the_next_distinct_score() -> None:
    # Three inputs share the score 0.2; the threshold that passes them must not sit on 0.2
    # (noise would flip them) nor next to the tie, but halfway to 0.5, the next larger score.
    scores = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.5], dtype=torch.float64)
    assert pass_rate_threshold(scores, 0.6) == pytest.approx((0.2 + 0.5) / 2)
    assert pass_rate_threshold(scores, 1.0) == 0.5  # nothing larger: the largest score itself
    correct = torch.tensor([True, True, True, True, False])
    assert selective_risk_threshold(scores, correct, 0.0)[0] == pytest.approx((0.2 + 0.5) / 2)


def _validation(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores u ~ U(0, 1), wrong with probability 0.028 u^3: the error rate among u <= t is 0.007 t^3."""
    u = torch.rand(n, generator=g)
    return u, torch.rand(n, generator=g) >= 0.028 * u**3


def _true_risk(t: float) -> float:
    return 0.007 * min(max(t, 0.0), 1.0) ** 3


def test_the_guaranteed_threshold_keeps_its_promise_where_the_plain_fit_does_not() -> None:
    """Over 200 validation sets of one distribution, the plain fit's true risk is over the 0.5 %
    target about half the time; SGR's, at 90 % confidence, at most about 10 % of the time."""
    g = torch.Generator().manual_seed(0)
    plain_over = sgr_over = 0
    for _ in range(200):
        u, ok = _validation(2000, g)
        plain_over += _true_risk(selective_risk_threshold(u, ok, 0.005)[0]) > 0.005
        t, risk, coverage, bound = guaranteed_risk_threshold(u, ok, 0.005, 0.9)
        sgr_over += _true_risk(t) > 0.005
        accepted = u <= t
        assert coverage == pytest.approx(float(accepted.float().mean()))
        assert risk == (pytest.approx(float((~ok[accepted]).float().mean())) if accepted.any() else 0.0)
        assert risk <= bound and (bound <= 0.005 or (coverage, bound) == (0.0, 1.0))  # nothing vouched for: nothing accepted
    assert plain_over >= 60 and sgr_over <= 25, (plain_over, sgr_over)


def test_the_risk_bound_is_clopper_pearsons() -> None:
    # No error in n: the bound solves (1 - b)^n = delta.
    assert risk_upper_bound(0, 1000, 0.05) == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert risk_upper_bound(5, 1000, 0.05) > 5 / 1000 > risk_upper_bound(5, 1000, 0.99)
    assert risk_upper_bound(3, 3, 0.1) == 1.0 and risk_upper_bound(0, 0, 0.1) == 1.0


def test_a_guaranteed_threshold_accepts_nothing_it_cannot_vouch_for() -> None:
    u = torch.linspace(0, 1, 50)
    ok = torch.ones(50, dtype=torch.bool)
    ok[::5] = False  # 20 % errors everywhere: no subset is within 0.5 % with 50 draws
    t, risk, coverage, bound = guaranteed_risk_threshold(u, ok, 0.005, 0.9)
    assert (coverage, risk, bound) == (0.0, 0.0, 1.0) and bool((u <= t).sum() == 0)


@pytest.mark.parametrize("n", [2, 5, 8, 13, 1000])
def test_a_guaranteed_threshold_accepts_everything_when_every_cut_passes(n: int) -> None:
    """The search ended early and read past its last cut (IndexError) whenever the top cut passed."""
    u = torch.linspace(0, 1, n)
    t, risk, coverage, bound = guaranteed_risk_threshold(u, torch.ones(n, dtype=torch.bool), 0.999, 0.9)
    assert (coverage, risk) == (1.0, 0.0) and bound <= 0.999 and bool((u <= t).all())
    # n correct out of n, each of the search's k = ceil(log2(n + 1)) tests at (1 - 0.9) / k:
    # Clopper-Pearson's (1 - b)^n = delta at that share of the confidence, not at all of it.
    assert bound == pytest.approx(1 - (0.1 / math.ceil(math.log2(n + 1))) ** (1 / n))
