"""Maximum softmax probability (Hendrycks & Gimpel 2017): the baseline for both jobs.

score = 1 - max_k p_k of the calibrated, sample-averaged predictive (higher = worse).
As a failure score this is MCP, the baseline of the ConfidNet paper.
"""

from __future__ import annotations

import torch

from models.scorers.base import ScoreInput, Scorer
from models.uncertainty import mean_probs


class MaxSoftmax(Scorer):
    name = "msp"

    def score(self, inp: ScoreInput) -> torch.Tensor:
        return 1.0 - mean_probs(inp.logits, inp.temperature).max(-1).values
