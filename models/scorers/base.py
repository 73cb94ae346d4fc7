"""The scorer interface (after pytorch-ood): `fit` on in-distribution data, `score` inputs.

Sign convention, everywhere: a higher score means the input is more likely
misclassified (failure scorers) or more likely out of distribution (OOD scorers).
Scorers that keep fitted statistics are `nn.Module`s so their state travels in the
bundle's safetensors under ``scorers.<name>.``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from models.base import UncertaintyModel


@dataclass
class ScoreInput:
    """What one forward pass of the pipeline has computed for a batch.

    x: normalised inputs ``[B, C, H, W]``; logits: raw logit samples ``[S, B, K]``;
    features: the model's features ``[S_f, B, D]``; temperature: the calibration T.
    graph: when a gradient scorer is served, the same forward recorded by autograd
    (``x_leaf`` requires grad, ``logits`` is its output), so the scorer can
    differentiate it instead of running the model again; None otherwise.
    """

    model: UncertaintyModel
    x: torch.Tensor
    logits: torch.Tensor
    features: torch.Tensor
    temperature: float
    graph: Graph | None = None


@dataclass(frozen=True)
class Graph:
    """An autograd-recorded forward: ``logits`` ``[S, B, K]`` computed from the leaf ``x_leaf``."""

    x_leaf: torch.Tensor
    logits: torch.Tensor


def record_forward(model: UncertaintyModel, x: torch.Tensor) -> tuple[Graph, torch.Tensor]:
    """The model's forward of `x` recorded by autograd from a fresh leaf: (graph, features ``[S_f, B, D]``).

    Raises inside `torch.inference_mode()`, where nothing can be recorded.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("ODIN differentiates through the model: run it outside torch.inference_mode()")
    with torch.enable_grad():
        # clone: the caller's tensor (possibly an inference tensor) never becomes the leaf
        leaf = x.detach().clone().requires_grad_(True)
        feats = model.features(leaf)
        return Graph(leaf, model.head_samples(feats)), feats


class Scorer(nn.Module):
    """Base class. `params()` returns the JSON-able hyperparameters stored in the manifest."""

    name: ClassVar[str] = "abstract"
    @property
    def needs_grad(self) -> bool:
        """True when `score` differentiates through the model (ODIN with a step): the
        pipeline then records its forward for it, outside inference mode."""
        return False

    def score(self, inp: ScoreInput) -> torch.Tensor:
        """Scores ``[B]``: higher = more likely wrong / out of distribution."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def upgrade_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """A manifest's stored params made current (defaults that older bundles lacked); as is by default."""
        return params
