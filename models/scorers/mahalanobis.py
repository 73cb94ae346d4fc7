"""Mahalanobis score (Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018).

Class-conditional Gaussians with a shared (tied) covariance on penultimate features:
score(f) = min_c (f - mu_c)^T Sigma^-1 (f - mu_c), the squared distance to the closest
class (the paper's confidence M(x) with the sign flipped: higher = more likely OOD).
The squared form is the paper's; it ranks inputs exactly as the plain distance does.
Input preprocessing and the layer ensemble of the paper are not used.
"""

from __future__ import annotations

from typing import Any

import torch

from models.scorers.base import ScoreInput, Scorer


def _flat_features(features: torch.Tensor) -> torch.Tensor:
    # [S_f, N, D] -> [N, D] by averaging over samples; [N, D] passes through.
    return features.mean(0) if features.dim() == 3 else features


class Mahalanobis(Scorer):
    """Min squared Mahalanobis distance to the class means, shape ``[B]`` (higher = OOD).

    Features: sampled models give ``[S_f, B, D]`` (S_f = M for an ensemble); the scorer
    uses their mean over S_f, at fit time as at score time. For an ensemble that mean
    lives in no single member's feature space, but fit and score see the same average,
    so the Gaussians describe exactly the quantity that is scored.

    State (buffers, so they travel in the bundle's safetensors): ``means`` ``[K, D]``,
    ``precision`` ``[D, D]`` (float64: an inverse covariance of ReLU features can have
    large entries) and ``fitted``. The constructor builds them empty from the manifest's
    params so that `load_state_dict(strict=True)` fills them; scoring unfitted raises.

    Args:
        num_classes: K. dim: feature dimension D. ridge: covariance regulariser,
            relative to the mean feature variance: Sigma + ridge * tr(Sigma) / D * I.

    Fitted on in-distribution training features only (training/scorer_fit.py); ridge is
    fixed a priori at 1e-6, just enough to keep a rank-deficient covariance invertible.
    """

    name = "mahalanobis"

    means: torch.Tensor
    precision: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, num_classes: int, dim: int, ridge: float = 1e-6) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1 or ridge < 0:
            raise ValueError("need num_classes >= 1, dim >= 1 and ridge >= 0")
        self.num_classes, self.dim, self.ridge = int(num_classes), int(dim), float(ridge)
        self.register_buffer("means", torch.zeros(num_classes, dim, dtype=torch.float64))
        self.register_buffer("precision", torch.zeros(dim, dim, dtype=torch.float64))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> Mahalanobis:
        """Fit on ID training features ``[N, D]`` (or ``[S_f, N, D]``) and labels ``[N]``.

        mu_c = class mean; Sigma = (1/N) sum_c sum_{i in c} (f_i - mu_c)(f_i - mu_c)^T
        (the tied maximum-likelihood estimate, as in the paper). Every class needs one
        example. Returns self.
        """
        f = _flat_features(features).double()
        y = labels.long().view(-1)
        if f.shape != (len(y), self.dim):
            raise ValueError(f"features {tuple(f.shape)} do not match labels [{len(y)}] and dim {self.dim}")
        counts = torch.bincount(y, minlength=self.num_classes)
        if len(counts) > self.num_classes or bool((counts == 0).any()):
            raise ValueError(
                f"need labels in [0, {self.num_classes}) with every class present; counts {counts.tolist()}"
            )
        means = torch.zeros(self.num_classes, self.dim, dtype=torch.float64).index_add_(0, y, f)
        means /= counts.unsqueeze(1)
        centred = f - means[y]
        cov = centred.T @ centred / len(y)
        cov += self.ridge * cov.diagonal().mean().clamp_min(1e-12) * torch.eye(self.dim, dtype=torch.float64)
        # Cholesky-based inverse: symmetric by construction, and raises if Sigma is singular.
        self.means.copy_(means)
        self.precision.copy_(torch.cholesky_inverse(torch.linalg.cholesky(cov)))
        self.fitted.fill_(True)
        return self

    @classmethod
    def from_features(
        cls, features: torch.Tensor, labels: torch.Tensor, num_classes: int, ridge: float = 1e-6
    ) -> Mahalanobis:
        """Build and fit in one call: features ``[N, D]`` or ``[S_f, N, D]``, labels ``[N]``."""
        return cls(num_classes, features.shape[-1], ridge).fit(features, labels)

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distances ``[B, K]`` of features ``[B, D]`` or ``[S_f, B, D]``."""
        if not bool(self.fitted):
            raise RuntimeError("Mahalanobis scorer is not fitted: call fit() on training features")
        f = _flat_features(features).double()
        fp = f @ self.precision  # [B, D]
        # (f - mu)^T P (f - mu) = f^T P f - 2 f^T P mu + mu^T P mu; float64 keeps the cancellation harmless.
        mpm = ((self.means @ self.precision) * self.means).sum(-1)  # [K]
        d2 = (fp * f).sum(-1, keepdim=True) - 2.0 * fp @ self.means.T + mpm
        return d2.clamp_min(0.0)

    def score(self, inp: ScoreInput) -> torch.Tensor:
        """Scores ``[B]`` = min over classes of the squared distance, in the features' dtype."""
        return self.distances(inp.features).min(-1).values.to(inp.features.dtype)

    def params(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "dim": self.dim, "ridge": self.ridge}
