"""Layer-ensemble Mahalanobis score (Lee, Lee, Lee & Shin, NeurIPS 2018, Sec. 2.2 "feature
ensemble"), fitted on in-distribution data only.

One class-conditional Gaussian with a tied covariance per layer (`Mahalanobis`) on the
spatially averaged output of every conv block and on the penultimate features
(`UncertaintyModel.layer_features`). Low layers see strokes and textures, the last one
classes, so the sum notices noise and blur as well as foreign objects.

Hyperparameters, chosen without OOD data (unlike the paper, which fits the layer weights
by logistic regression on OOD validation samples):
- layers: all of them, fixed a priori (the paper's "all blocks");
- weights: equal, after standardising each layer's score by its mean and standard
  deviation on held-out in-distribution data, so that no layer dominates by scale
  (a squared distance in D dimensions is about D on average);
- no input preprocessing (the paper's optional noise step is left out: the score
  needs no gradient, so it runs in the same inference pass as the classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.scorers.base import ScoreInput, Scorer
from models.scorers.mahalanobis import Mahalanobis


class MahalanobisLayers(Scorer):
    """Sum over layers of standardised min-class squared Mahalanobis distances, ``[B]`` (higher = OOD).

    State (buffers, travel in the bundle): each layer's ``layers.<l>.means``/``precision``
    (see `Mahalanobis`), ``loc`` and ``scale`` ``[L]`` (float64) and ``fitted``.

    Args:
        num_classes: K. dims: feature dimension D_l of every layer, in the order of
            `layer_features`. ridge: covariance regulariser per layer (see `Mahalanobis`).
    """

    name = "mahalanobis_layers"

    loc: torch.Tensor
    scale: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, num_classes: int, dims: Sequence[int], ridge: float = 1e-6) -> None:
        super().__init__()
        if len(dims) == 0:
            raise ValueError("need at least one layer")
        self.num_classes, self.dims, self.ridge = int(num_classes), [int(d) for d in dims], float(ridge)
        self.layers = nn.ModuleList(Mahalanobis(self.num_classes, d, self.ridge) for d in self.dims)
        self.register_buffer("loc", torch.zeros(len(self.dims), dtype=torch.float64))
        self.register_buffer("scale", torch.ones(len(self.dims), dtype=torch.float64))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(
        self, train: Sequence[torch.Tensor], labels: torch.Tensor, held_out: Sequence[torch.Tensor]
    ) -> MahalanobisLayers:
        """Fit the Gaussians on ID `train` features and the standardisation on ID `held_out` ones.

        `train`: per layer ``[N, D_l]`` or ``[S_f, N, D_l]`` with `labels` ``[N]``;
        `held_out`: per layer ``[M, D_l]`` or ``[S_f, M, D_l]``, disjoint from `train` (on
        training data the distances are optimistically small). Returns self.
        """
        if len(train) != len(self.layers) or len(held_out) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} layers of features")
        for gauss, feats in zip(self.layers, train, strict=True):
            gauss.fit(feats, labels)  # type: ignore[operator]
        raw = self.layer_scores(held_out, standardised=False)  # [L, M]
        self.loc.copy_(raw.mean(1))
        self.scale.copy_(raw.std(1).clamp_min(1e-12))
        self.fitted.fill_(True)
        return self

    def layer_scores(self, layers: Sequence[torch.Tensor], standardised: bool = True) -> torch.Tensor:
        """Per-layer scores ``[L, B]`` (float64) of per-layer features ``[S_f, B, D_l]`` or ``[B, D_l]``."""
        raw = torch.stack([g.distances(f).min(-1).values for g, f in zip(self.layers, layers, strict=True)])  # type: ignore[operator]
        if not standardised:
            return raw
        if not bool(self.fitted):
            raise RuntimeError("MahalanobisLayers is not fitted: call fit() on in-distribution features")
        return (raw - self.loc.unsqueeze(1)) / self.scale.unsqueeze(1)

    def score(self, inp: ScoreInput) -> torch.Tensor:
        """Scores ``[B]``: one more pass through the backbone for its per-layer features."""
        layers = inp.model.layer_features(inp.x)
        return self.layer_scores(layers).sum(0).to(inp.x.dtype)

    def params(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "dims": self.dims, "ridge": self.ridge}
