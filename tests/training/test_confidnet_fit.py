"""ConfidNet training refuses a head that collapsed to a constant instead of serving it."""

from __future__ import annotations

import contextlib
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


def test_training_passes_use_the_classifiers_dropout_but_not_its_batchnorm(data_dir: Path) -> None:
    torch.manual_seed(0)
    splits = make_splits(data_dir, val_size=400, train_size=200)
    model = Deterministic(SmallCNN(dropout=0.25)).eval()
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    plain, _ = cf._training_pass(model, splits.train, kind="none", dropout=False, seed=0)
    again, _ = cf._training_pass(model, splits.train, kind="none", dropout=False, seed=0)
    dropped, targets = cf._training_pass(model, splits.train, kind="none", dropout=True, seed=0)
    assert torch.equal(plain, again)  # without dropout a pass is deterministic
    assert not torch.allclose(plain, dropped)  # with it the features are perturbed
    assert targets.shape == (200,) and bool(((targets >= 0) & (targets <= 1)).all())
    assert not model.training  # served in eval mode afterwards
    for k, v in bn.items():  # BatchNorm statistics untouched by the training-mode passes
        assert torch.equal(model.state_dict()[k], v), k


def test_pass_perturbations_by_kind() -> None:
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cf.perturbed(x, "none", torch.Generator().manual_seed(1)), x)
    shifted = cf.perturbed(x, "shift", torch.Generator().manual_seed(1))
    assert torch.equal(shifted, cf.random_shift(x, cf.SHIFT, torch.Generator().manual_seed(1)))  # one offset for the chunk
    distorted = cf.perturbed(x, "distort", torch.Generator().manual_seed(1))
    assert torch.equal(distorted, cf.random_affine(x, torch.Generator().manual_seed(1)))  # one map per digit
    with pytest.raises(ValueError, match="unknown perturbation"):
        cf.perturbed(x, "rotate", torch.Generator())


@pytest.mark.parametrize(("passes", "affine_calls"), [("shift", 0), ("distort", 4)])
def test_the_recipe_decides_how_the_passes_perturb(passes: str, affine_calls: int, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    splits = make_splits(data_dir, val_size=400, train_size=200)  # one chunk per pass
    model = Deterministic(SmallCNN(dropout=0.25)).eval()
    calls = []
    real = cf.random_affine

    def spy(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        calls.append(len(x))
        return real(x, gen)

    monkeypatch.setattr(cf, "random_affine", spy)
    monkeypatch.setattr(cf, "HEAD_EPOCHS", 1)
    # An untrained classifier may leave a one-epoch head at chance, which is refused after
    # the passes ran; the recipe's report is checked end to end in test_zoo_training.
    with contextlib.suppress(RuntimeError):
        cf.train_confidnet(model, splits, TrainConfig(seed=0), passes)
    assert calls == [200] * affine_calls
    with pytest.raises(ValueError, match="unknown ConfidNet passes"):
        cf.train_confidnet(model, splits, TrainConfig(seed=0), "rotate")
