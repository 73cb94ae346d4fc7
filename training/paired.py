"""Paired bootstrap intervals for the zoo's comparisons on MNIST test (`vigil evaluate`).

The targets compare two things measured on the same 10,000 test images: a ConfidNet head
against MCP on the same network, one model's NLL against the deterministic baseline's.
With 40-65 errors per network, AUPR-Error moves by several points with the test sample
alone, so a difference means little without its interval.

Each bootstrap replicate resamples the test images (with replacement) and recomputes the
difference on the resample; both sides see the same resample (paired), which cancels the
noise they share. Every bundle draws the same sequence of resamples (`resamples`, one
seed), because every seed's network was tested on the same images: averaging the seeds'
replicates index by index gives the interval of the mean over seeds, the figure the
targets are judged on. The interval covers test-sample noise only, for these trained
networks; the spread between training seeds is the ± beside each mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score

#: Replicates per interval. AUPR-Error costs ~5 ms per score and replicate on 10,000 images
#: here, so a ConfidNet-vs-MCP interval takes about ten seconds per bundle.
RESAMPLES = 1000
SEED = 0


@dataclass(frozen=True)
class Difference:
    """A difference a - b on the test set and its bootstrap replicates."""

    delta: float
    replicates: np.ndarray

    def summary(self) -> dict[str, float]:
        low, high = np.percentile(self.replicates, [2.5, 97.5])
        return {"delta": self.delta, "ci95_low": float(low), "ci95_high": float(high)}


def resamples(n: int, count: int = RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """`count` index vectors, each `n` test images drawn with replacement; the same for every caller."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield rng.integers(0, n, n)


def _paired(stat: Callable[[np.ndarray], float], n: int, count: int) -> Difference:
    every = np.arange(n)
    return Difference(stat(every), np.array([stat(idx) for idx in resamples(n, count)]))


def aupr_error_gain(score_a: np.ndarray, score_b: np.ndarray, correct: np.ndarray, count: int = RESAMPLES) -> Difference:
    """AUPR-Error (points, errors positive) of failure score a minus that of b; scores higher = more likely wrong."""
    wrong = ~correct.astype(bool)

    def gain(idx: np.ndarray) -> float:
        w = wrong[idx]
        if not w.any() or w.all():  # no AUPR without both classes; rare, and the same for both scores
            return 0.0
        return 100 * (average_precision_score(w, score_a[idx]) - average_precision_score(w, score_b[idx]))

    return _paired(gain, len(correct), count)


def mean_difference(loss_a: np.ndarray, loss_b: np.ndarray, count: int = RESAMPLES) -> Difference:
    """Mean per-image loss of a minus that of b (NLL: negative = a is better)."""
    d = loss_a.astype(np.float64) - loss_b.astype(np.float64)
    return _paired(lambda idx: float(d[idx].mean()), len(d), count)


def pooled(diffs: list[Difference]) -> dict[str, float]:
    """The mean of the seeds' differences and its interval, from their replicates averaged index by index."""
    return Difference(float(np.mean([d.delta for d in diffs])), np.mean([d.replicates for d in diffs], axis=0)).summary()
