"""Scorer classes by name; a manifest names a scorer and its params, this builds it."""

from __future__ import annotations

from typing import Any

from models.scorers.base import Scorer
from models.scorers.confidnet import ConfidNetScorer
from models.scorers.energy import Energy
from models.scorers.entropy import MutualInformation, PredictiveEntropy
from models.scorers.mahalanobis import Mahalanobis
from models.scorers.mahalanobis_layers import MahalanobisLayers
from models.scorers.msp import MaxSoftmax
from models.scorers.odin import ODIN
from models.scorers.shift_consistency import ShiftConsistency

SCORERS: dict[str, type[Scorer]] = {
    cls.name: cls for cls in (MaxSoftmax, PredictiveEntropy, MutualInformation)
}
# OOD scorers (entropy and mutual information above serve for OOD as well).
SCORERS.update({cls.name: cls for cls in (Energy, ODIN, Mahalanobis)})
SCORERS[MahalanobisLayers.name] = MahalanobisLayers  # Lee et al.'s layer ensemble, ID-only weights
SCORERS[ConfidNetScorer.name] = ConfidNetScorer  # failure scorer (Corbière et al. 2019)
SCORERS[ShiftConsistency.name] = ShiftConsistency  # failure scorer: the prediction under one-pixel shifts


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator for scorers defined in their own modules."""
    SCORERS[cls.name] = cls
    return cls


def build_scorer(name: str, params: dict[str, Any] | None = None) -> Scorer:
    """A fresh scorer (`params` None) or one rebuilt from a manifest's stored `params`."""
    if name not in SCORERS:
        raise KeyError(f"unknown scorer {name!r}; known: {sorted(SCORERS)}")
    cls = SCORERS[name]
    return cls() if params is None else cls(**cls.upgrade_params(params))
