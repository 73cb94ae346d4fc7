"""`--failure-scorer auto`: serve the failure score that detects errors best on held-out data.

ConfidNet is trained to beat MCP, but on a strong classifier it often does not (docs/results.md),
and a bundle should not serve the worse of two scores it already has. The candidates
(MCP, predictive entropy, mutual information for sampled models, and the ConfidNet head)
are compared by AUPR-Error, the ConfidNet paper's own criterion, on the `cal` split:

- not on `val`: ConfidNet's epoch was chosen there by the same criterion, so its `val`
  figure is the best of many and biased in its favour; temperature and thresholds use it too.
- `cal` is otherwise spent only on the conformal quantile, which depends on the calibrated
  probabilities alone. Which failure score is served does not change them, so the
  conformal guarantee is untouched.

Ties go to the earlier candidate: MCP first, the one with nothing to learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from models.base import UncertaintyModel
from models.scorers.base import ScoreInput, Scorer
from models.scorers.registry import build_scorer
from training import metrics
from training.data import Splits
from training.loop import features_and_logits, normalise

#: Parameter-free candidates, in order of preference on ties.
PLAIN_CANDIDATES = ("msp", "entropy")
RULE = "best AUPR-Error (errors positive; ConfidNet paper) on the cal split, which no candidate was selected on; ties: the earlier candidate"


def plain_candidates(num_samples: int) -> dict[str, Scorer]:
    """MCP and entropy, and mutual information for a sampled model (S > 1), in order of preference."""
    names = [*PLAIN_CANDIDATES, *(("mutual_information",) if num_samples > 1 else ())]
    return {n: build_scorer(n) for n in names}


def aupr_errors(scorers: Mapping[str, Scorer], inp: ScoreInput, labels: torch.Tensor) -> dict[str, float]:
    """AUPR-Error (%) of every scorer on one scored split, errors of the calibrated prediction positive."""
    correct = torch.softmax(inp.logits / inp.temperature, -1).mean(0).argmax(-1) == labels
    with torch.no_grad():
        return {name: metrics.misclassification(s.score(inp), correct)["aupr_error"] for name, s in scorers.items()}


def choose_failure_scorer(
    model: UncertaintyModel, learned: Mapping[str, Scorer], splits: Splits, temperature: float
) -> tuple[Scorer, dict[str, Any]]:
    """The served failure scorer among the plain candidates and `learned`, and the report for the manifest.

    Scored at `temperature`, the served one (`training.loop.served_temperature`), so the
    scores are those served.
    """
    model.eval()
    feats, logits = features_and_logits(model, splits.cal.x)  # one forward of cal serves every candidate
    pool = {**plain_candidates(logits.shape[0]), **learned}
    values = aupr_errors(pool, ScoreInput(model, normalise(splits.cal.x), logits, feats, temperature), splits.cal.y)
    # Without a single error on cal (tiny subsets) AUPR-Error is undefined (NaN): MCP then.
    defined = {k: v for k, v in values.items() if not math.isnan(v)}
    best = max(defined.values(), default=math.nan)
    chosen = next((name for name, v in defined.items() if v >= best), PLAIN_CANDIDATES[0])  # first of the ties
    table = {k: (None if math.isnan(v) else round(v, 3)) for k, v in values.items()}
    report = {"auto_chosen": chosen, "auto_rule": RULE, "auto_cal_aupr_error": table}
    return pool[chosen], report
