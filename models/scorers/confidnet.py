"""ConfidNet failure scorer (Corbière et al. 2019): score = 1 - predicted TCP.

Higher = more likely misclassified. The head is a submodule, so its weights travel in
the bundle under ``scorers.failure.head.*``; the constructor takes only JSON-able
dimensions, stored in the manifest's scorer params.

For features ``[S_f, B, D]`` with S_f > 1 (an ensemble's members, a variational
network's posterior samples) the head runs on every feature sample and the
predicted TCPs are averaged, matching `models.confidnet.confidnet_training_pairs`.
Averaging the features first would mix unrelated feature spaces for an ensemble.

After the paper's second phase (`training.confidnet_finetune`) the scorer owns a
fine-tuned copy of the classifier's encoder (``encoder``: architecture name and
params; its weights travel under ``scorers.failure.encoder.*``) and computes its
features from the input itself; the served prediction still comes from the
untouched classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from models.architectures import build_architecture
from models.confidnet import ConfidNetHead
from models.scorers.base import ScoreInput, Scorer


class ConfidNetScorer(Scorer):
    """Failure scorer: ``1 - mean_s ConfidNet(features_s)``, scores ``[B]`` in (0, 1)."""

    name = "confidnet"

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256), encoder: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.hidden = [int(h) for h in hidden]
        self.head = ConfidNetHead(self.in_features, self.hidden)
        #: {"architecture": name, "params": {...}} of the fine-tuned encoder copy, or None.
        self.encoder_spec = None if encoder is None else {"architecture": str(encoder["architecture"]), "params": dict(encoder["params"])}
        self.encoder = None if encoder is None else build_architecture(self.encoder_spec["architecture"], **self.encoder_spec["params"]).eval()

    def params(self) -> dict[str, Any]:
        extra = {} if self.encoder_spec is None else {"encoder": self.encoder_spec}
        return {"in_features": self.in_features, "hidden": self.hidden, **extra}

    def head_features(self, inp: ScoreInput) -> torch.Tensor:
        """The head's inputs ``[S_f, B, D]``: the classifier's features, or its own encoder's."""
        if self.encoder is None:
            return inp.features
        return self.encoder.forward_features(inp.x).unsqueeze(0)

    def score(self, inp: ScoreInput) -> torch.Tensor:
        # [S_f, B, D] -> [S_f, B] -> [B]
        return 1.0 - self.head(self.head_features(inp)).mean(0)
