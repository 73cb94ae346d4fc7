"""Entropy-based scores: predictive entropy and mutual information (higher = worse).

Mutual information between prediction and weights (Gal 2016) is the epistemic part
of the predictive entropy; it is zero for a single-sample model.
"""

from __future__ import annotations

import torch

from models.scorers.base import ScoreInput, Scorer
from models.uncertainty import uncertainty


class PredictiveEntropy(Scorer):
    name = "entropy"

    def score(self, inp: ScoreInput) -> torch.Tensor:
        return uncertainty(inp.logits, inp.temperature).predictive_entropy


class MutualInformation(Scorer):
    name = "mutual_information"

    def score(self, inp: ScoreInput) -> torch.Tensor:
        return uncertainty(inp.logits, inp.temperature).mutual_information
