"""Paired bootstrap intervals of the zoo's comparisons (training.paired, training.evaluate.comparisons)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from training.evaluate import PerImage, comparisons
from training.paired import (
    Difference,
    aupr_error_gain,
    mean_difference,
    pooled,
    resamples,
)


def _failures(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(correct, a score that ranks errors first, an uninformative score)."""
    rng = np.random.default_rng(seed)
    correct = rng.random(n) > 0.05
    good = (~correct) + 0.8 * rng.random(n)  # errors above almost every success
    return correct, good, rng.random(n)


def test_the_gain_is_the_difference_of_the_two_aupr_errors() -> None:
    correct, good, noise = _failures(2000, 0)
    d = aupr_error_gain(good, noise, correct, count=200)
    expected = 100 * (average_precision_score(~correct, good) - average_precision_score(~correct, noise))
    assert d.delta == pytest.approx(expected)
    s = d.summary()
    assert s["ci95_low"] > 20  # a clearly better score: the whole interval far above 0
    assert s["ci95_low"] < d.delta < s["ci95_high"]


def test_identical_scores_differ_by_exactly_nothing() -> None:
    correct, good, _ = _failures(500, 1)
    assert aupr_error_gain(good, good.copy(), correct, count=50).summary() == {"delta": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}


def test_pairing_keeps_nearly_equal_scores_close() -> None:
    # Unpaired, each AUPR-Error would carry its own sampling error (several points with
    # ~25 errors); paired, a tiny perturbation barely moves the difference.
    correct, good, _ = _failures(500, 2)
    nudged = good + 1e-3 * np.random.default_rng(3).random(500)
    s = aupr_error_gain(nudged, good, correct, count=200).summary()
    assert s["ci95_high"] - s["ci95_low"] < 1.0


def test_mean_difference_of_losses() -> None:
    rng = np.random.default_rng(4)
    b = rng.random(1000)
    shifted = mean_difference(b - 0.25, b, count=100)
    # Every resample of a constant per-image difference has that mean.
    assert shifted.summary() == pytest.approx({"delta": -0.25, "ci95_low": -0.25, "ci95_high": -0.25})
    a = b + rng.normal(0.0, 1.0, 1000)
    d = mean_difference(a, b, count=300)
    assert d.delta == pytest.approx(float(np.mean(a - b)))
    s = d.summary()
    assert s["ci95_low"] < d.delta < s["ci95_high"] and s["ci95_high"] - s["ci95_low"] < 0.2  # ~ 4 / sqrt(1000)


def test_every_caller_draws_the_same_resamples() -> None:
    # Bundles of different seeds are compared on one test set: their replicates can only be
    # averaged index by index if replicate k resampled the same images for all of them.
    first, again = list(resamples(50, 5)), list(resamples(50, 5))
    assert all((x == y).all() for x, y in zip(first, again, strict=True))
    assert not all((x == y).all() for x, y in zip(first, resamples(50, 5, seed=1), strict=False))


def test_pooling_averages_replicates_index_by_index() -> None:
    up, down = Difference(1.0, np.arange(100.0)), Difference(3.0, np.arange(100.0)[::-1].copy())
    # Index-wise means are all 49.5; pooling the two lists into one would span 2.5 .. 96.5.
    assert pooled([up, down]) == {"delta": 2.0, "ci95_low": 49.5, "ci95_high": 49.5}


def _run(seed: int, nll: float, confidnet: bool = False) -> PerImage:
    correct, good, noise = _failures(400, seed)
    failure = {"mcp": noise, **({"confidnet": good} if confidnet else {})}
    return PerImage(seed=seed, correct=correct, nll=np.full(400, nll), failure=failure)


def test_comparisons_match_seeds_and_judge_confidnet_on_its_own_network() -> None:
    groups = {
        "det": ("deterministic", [_run(0, 0.5, confidnet=True), _run(1, 0.7, confidnet=True)]),
        # Listed in the other order: each seed must meet its own baseline, not the same position.
        "ens": ("ensemble", [_run(1, 0.4), _run(0, 0.45)]),
        "other": ("mc_dropout", [_run(5, 0.1)]),  # no deterministic network of seed 5
    }
    c = comparisons(groups, count=50)
    nll = c["ens"]["nll_vs_baseline"]
    assert nll["baseline"] == "det" and nll["seeds"] == [1, 0]
    assert nll["per_seed"] == pytest.approx([-0.3, -0.05])
    assert nll["delta"] == pytest.approx(-0.175) and nll["ci95_low"] == pytest.approx(-0.175)
    assert "other" not in c and "det" not in {k for k, v in c.items() if "nll_vs_baseline" in v}
    cn = c["det"]["confidnet_vs_mcp"]
    expected = [100 * (average_precision_score(~r.correct, r.failure["confidnet"]) - average_precision_score(~r.correct, r.failure["mcp"])) for r in groups["det"][1]]
    assert cn["per_seed"] == pytest.approx(expected) and cn["delta"] == pytest.approx(np.mean(expected))
    assert "confidnet_vs_mcp" not in c["ens"]  # MCP only: nothing to compare


def test_no_baseline_comparison_without_exactly_one_deterministic_model() -> None:
    groups = {"a": ("deterministic", [_run(0, 0.5)]), "b": ("deterministic", [_run(0, 0.4)]), "c": ("ensemble", [_run(0, 0.3)])}
    assert comparisons(groups, count=20) == {}
