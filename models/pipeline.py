"""The full uncertainty computation for a batch, from normalised pixels to scores.

One batched forward yields logit samples; calibration, the entropy split, the failure
and OOD scores and the conformal set all derive from it. Scorers that differentiate
through the model (ODIN) run outside inference mode on their own copy of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.bundle import Bundle
from models.conformal import aps_sets
from models.scorers.base import ScoreInput
from models.uncertainty import uncertainty


@dataclass(frozen=True)
class PipelineOutput:
    """Per-batch results; leading dimension B everywhere except sample_probs ``[S, B, K]``."""

    probs: torch.Tensor
    sample_probs: torch.Tensor
    predictive_entropy: torch.Tensor
    mutual_information: torch.Tensor
    failure_score: torch.Tensor
    ood_score: torch.Tensor
    prediction_sets: torch.Tensor

    def row(self, i: int) -> PipelineOutput:
        """The i-th input's results, keeping a batch dimension of 1."""
        return self.rows(i, i + 1)

    def rows(self, start: int, stop: int) -> PipelineOutput:
        """Inputs ``start:stop`` (views, no copy): how a micro-batch is handed back per caller."""
        return PipelineOutput(
            self.probs[start:stop],
            self.sample_probs[:, start:stop],
            self.predictive_entropy[start:stop],
            self.mutual_information[start:stop],
            self.failure_score[start:stop],
            self.ood_score[start:stop],
            self.prediction_sets[start:stop],
        )

    @staticmethod
    def concat(parts: list[PipelineOutput]) -> PipelineOutput:
        """Join outputs of consecutive chunks of one batch (the inverse of `rows`)."""
        if len(parts) == 1:
            return parts[0]
        return PipelineOutput(
            torch.cat([p.probs for p in parts]),
            torch.cat([p.sample_probs for p in parts], dim=1),
            torch.cat([p.predictive_entropy for p in parts]),
            torch.cat([p.mutual_information for p in parts]),
            torch.cat([p.failure_score for p in parts]),
            torch.cat([p.ood_score for p in parts]),
            torch.cat([p.prediction_sets for p in parts]),
        )


class Pipeline:
    """Applies a loaded bundle to batches of pixels in [0, 1], shape ``[B, C, H, W]``."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        spec = bundle.manifest.input
        self.mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std).view(1, -1, 1, 1)
        self.temperature = bundle.manifest.temperature
        self.qhat = bundle.manifest.conformal.qhat

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    def run(self, pixels: torch.Tensor) -> PipelineOutput:
        x = self.normalise(pixels.float())
        model = self.bundle.model
        with torch.inference_mode():
            feats = model.features(x)
            logits = model.head_samples(feats)
        # Inference tensors cannot enter autograd; gradient scorers get plain copies.
        inp = ScoreInput(model=model, x=x, logits=logits.clone(), features=feats.clone(), temperature=self.temperature)
        scores = {}
        for role, scorer in (("failure", self.bundle.failure_scorer), ("ood", self.bundle.ood_scorer)):
            if scorer.needs_grad:
                scores[role] = scorer.score(inp).detach()
            else:
                with torch.inference_mode():
                    scores[role] = scorer.score(inp)
        with torch.inference_mode():
            u = uncertainty(logits, self.temperature)
            sample_probs = torch.softmax(logits / self.temperature, dim=-1)
            sets = aps_sets(u.probs, self.qhat)
        return PipelineOutput(
            probs=u.probs,
            sample_probs=sample_probs,
            predictive_entropy=u.predictive_entropy,
            mutual_information=u.mutual_information,
            failure_score=scores["failure"],
            ood_score=scores["ood"],
            prediction_sets=sets,
        )
