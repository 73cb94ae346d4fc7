"""ConfidNet's two phases as one call, so `vigil train` and `vigil refit` build a head the same way.

Phase 1 (`training.confidnet_fit`) trains the head on the frozen classifier's features;
phase 2 (`training.confidnet_finetune`, only with ``finetune_epochs > 0``) fine-tunes a
copy of the encoder with it. The reports go into the manifest under the keys returned.
"""

from __future__ import annotations

from typing import Any

from models.base import UncertaintyModel
from models.scorers.confidnet import ConfidNetScorer
from training.confidnet_finetune import finetune_confidnet
from training.confidnet_fit import train_confidnet
from training.data import Splits
from training.loop import TrainConfig


def fit_confidnet(
    model: UncertaintyModel,
    splits: Splits,
    cfg: TrainConfig,
    arch_params: dict[str, Any],
    passes: str = "shift",
    finetune_epochs: int = 0,
) -> tuple[ConfidNetScorer, dict[str, dict[str, Any]]]:
    """The head to serve and its reports: ``confidnet_fit`` and, if fine-tuned, ``confidnet_finetune``."""
    scorer, fit_report = train_confidnet(model, splits, cfg, passes)
    reports = {"confidnet_fit": fit_report}
    if finetune_epochs:
        scorer, reports["confidnet_finetune"] = finetune_confidnet(model, scorer, splits, cfg, finetune_epochs, arch_params, passes)
    return scorer, reports
