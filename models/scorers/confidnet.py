"""ConfidNet failure scorer (Corbière et al. 2019): score = 1 - predicted TCP.

Higher = more likely misclassified. The head is a submodule, so its weights travel in
the bundle under ``scorers.failure.head.*``; the constructor takes only JSON-able
dimensions, stored in the manifest's scorer params.

For features ``[S_f, B, D]`` with S_f > 1 (an ensemble's members, a variational
network's posterior samples) the head runs on every feature sample and the
predicted TCPs are averaged, matching `models.confidnet.confidnet_training_pairs`.
Averaging the features first would mix unrelated feature spaces for an ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from models.confidnet import ConfidNetHead
from models.scorers.base import ScoreInput, Scorer


class ConfidNetScorer(Scorer):
    """Failure scorer: ``1 - mean_s ConfidNet(features_s)``, scores ``[B]`` in (0, 1)."""

    name = "confidnet"

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.hidden = [int(h) for h in hidden]
        self.head = ConfidNetHead(self.in_features, self.hidden)

    def params(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "hidden": self.hidden}

    def score(self, inp: ScoreInput) -> torch.Tensor:
        # [S_f, B, D] -> [S_f, B] -> [B]
        return 1.0 - self.head(inp.features).mean(0)
