"""ConfidNet training refuses a head that collapsed to a constant instead of serving it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import training.confidnet_fit as cf
from models.architectures import SmallCNN
from models.deterministic import Deterministic
from training.data import make_splits
from training.loop import TrainConfig


def test_collapsed_head_is_refused(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    splits = make_splits(data_dir, val_size=400, train_size=200)
    model = Deterministic(SmallCNN()).eval()  # untrained: its errors are everywhere
    # A zeroed last layer and a learning rate of 0: the head outputs one constant value,
    # which ranks no error above any success (AUPR-Error = the error rate).
    monkeypatch.setattr(cf, "HEAD_LR", 0.0)
    monkeypatch.setattr(cf, "HEAD_EPOCHS", 1)
    real_init = cf.ConfidNetScorer.__init__

    def constant_init(self: cf.ConfidNetScorer, *a: object, **k: object) -> None:
        real_init(self, *a, **k)
        last = self.head.mlp[-1]
        torch.nn.init.zeros_(last.weight)

    monkeypatch.setattr(cf.ConfidNetScorer, "__init__", constant_init)
    with pytest.raises(RuntimeError, match="did not learn"):
        cf.train_confidnet(model, splits, TrainConfig(seed=0))
