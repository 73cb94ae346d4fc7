"""The full uncertainty computation for a batch, from normalised pixels to scores.

One batched forward yields logit samples; calibration, the entropy split, the failure
and OOD scores and the conformal set all derive from it. When a served scorer
differentiates through the model (ODIN), that forward is recorded by autograd, outside
inference mode, and the scorer differentiates it rather than running the model again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from models.bundle import Bundle
from models.conformal import aps_sets
from models.scorers.base import ScoreInput, record_forward
from models.uncertainty import sample_probs_of, uncertainty

#: At most this many samples' votes for the predicted class go into an answer.
SPREAD_KEEP = 64


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
    #: The same rows as plain Python values (`with_values`), made once per batch on the
    #: torch thread so that answering a request runs no tensor op on the event loop.
    values: list[RowValues] | None = field(default=None, compare=False)

    def with_values(self, keep: int = SPREAD_KEEP) -> PipelineOutput:
        """This output with `values` filled in: about a dozen tensor ops for the whole batch."""
        return replace(self, values=to_values(self, keep))

    def row_values(self) -> list[RowValues]:
        """Every row as `RowValues`: the ones made on the torch thread, else made now."""
        return self.values if self.values is not None else to_values(self)

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
            None if self.values is None else self.values[start:stop],
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
            None if any(p.values is None for p in parts) else [v for p in parts for v in p.values],  # type: ignore[union-attr]
        )


@dataclass(frozen=True)
class RowValues:
    """One input's results as Python numbers, what the response and the log record need."""

    probs: list[float]
    label: int  # argmax of `probs`, the first one on ties
    predictive_entropy: float
    mutual_information: float
    failure_score: float
    ood_score: float
    prediction_set: list[int]  # class indices, ascending
    sample_count: int  # S
    sample_min: list[float]  # per class, over samples
    sample_max: list[float]
    sample_votes: list[float]  # each sample's probability of `label`, the first SPREAD_KEEP samples


def to_values(out: PipelineOutput, keep: int = SPREAD_KEEP) -> list[RowValues]:
    """Every row of `out` as `RowValues`, with one ``.tolist()`` per quantity for the batch."""
    labels = out.probs.argmax(-1)  # [B]
    votes = sample_probs_of(out.sample_probs[:keep], labels).T  # [B, S']
    count = int(out.sample_probs.shape[0])
    columns = zip(
        out.probs.tolist(),
        labels.tolist(),
        out.predictive_entropy.tolist(),
        out.mutual_information.tolist(),
        out.failure_score.tolist(),
        out.ood_score.tolist(),
        out.prediction_sets.tolist(),
        out.sample_probs.amin(0).tolist(),
        out.sample_probs.amax(0).tolist(),
        votes.tolist(),
        strict=True,
    )
    return [
        RowValues(p, lab, h, mi, f, o, [k for k, inside in enumerate(ps) if inside], count, lo, hi, v)
        for p, lab, h, mi, f, o, ps, lo, hi, v in columns
    ]


class Pipeline:
    """Applies a loaded bundle to batches of pixels in [0, 1], shape ``[B, C, H, W]``."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        spec = bundle.manifest.input
        self.mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std).view(1, -1, 1, 1)
        self.temperature = bundle.manifest.temperature
        self.qhat = bundle.manifest.conformal.qhat

    @property
    def needs_grad(self) -> bool:
        """Whether a served scorer differentiates through the model (read from the scorers, never cached)."""
        return self.bundle.failure_scorer.needs_grad or self.bundle.ood_scorer.needs_grad

    def _recorded_forward(self, x: torch.Tensor) -> ScoreInput:
        """The batch's one forward, recorded by autograd for the gradient scorer (ODIN).

        Running it once with gradients on, instead of once in inference mode and again
        inside the scorer, saves a whole forward per batch (measured ~1/5 of ODIN's
        pipeline). Everything but the scorer's backward sees detached tensors.
        """
        graph, feats = record_forward(self.bundle.model, x)
        return ScoreInput(self.bundle.model, x, graph.logits.detach(), feats.detach(), self.temperature, graph)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    def run(self, pixels: torch.Tensor) -> PipelineOutput:
        x = self.normalise(pixels.float())
        model = self.bundle.model
        if self.needs_grad:
            inp = self._recorded_forward(x)
            feats, logits = inp.features, inp.logits
        else:
            with torch.inference_mode():
                feats = model.features(x)
                logits = model.head_samples(feats)
            inp = ScoreInput(model=model, x=x, logits=logits, features=feats, temperature=self.temperature)
        scores = {}
        for role, scorer in (("failure", self.bundle.failure_scorer), ("ood", self.bundle.ood_scorer)):
            if scorer.needs_grad:
                scores[role] = scorer.score(inp).detach()
                inp = replace(inp, graph=None)  # its backward freed the graph; a second scorer runs its own
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
