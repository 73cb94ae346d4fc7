"""ConfidNet's second phase: a fine-tuned encoder copy, the classifier untouched, the best validation check kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sklearn.metrics import average_precision_score

import training.confidnet_finetune as ft
import training.confidnet_fit as cf
from models.architectures import SmallCNN
from models.deterministic import Deterministic
from models.ensemble import PackedEnsemble
from models.scorers.confidnet import ConfidNetScorer
from training.data import Splits, make_splits
from training.loop import TrainConfig, normalise

ARCH = {"widths": [4, 8], "hidden": 16, "dropout": 0.25}


@pytest.fixture(scope="module")
def splits(data_dir: Path) -> Splits:
    return make_splits(data_dir, val_size=400, train_size=256)


def _setup() -> tuple[Deterministic, ConfidNetScorer]:
    torch.manual_seed(0)
    model = Deterministic(SmallCNN(**ARCH)).eval()  # untrained: plenty of validation errors
    return model, ConfidNetScorer(in_features=ARCH["hidden"], hidden=[8]).eval()


def test_the_classifier_stays_frozen_and_the_encoder_copy_learns(splits: Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    model, head = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Every check better than the last: the final state is the one kept, so it shows what training did.
    rising = iter(range(1, 100))
    monkeypatch.setattr(cf.Validation, "aupr_error", lambda *a: next(rising) / 100)
    monkeypatch.setattr(ft, "FINETUNE_BATCH", 32)  # 8 steps per epoch: a check every 2
    tuned, report = ft.finetune_confidnet(model, head, splits, TrainConfig(seed=0), epochs=1, arch_params=ARCH)
    for k, v in model.state_dict().items():  # weights and BatchNorm statistics of the served classifier
        assert torch.equal(v, before[k]), k
    assert not model.training
    assert tuned.encoder is not None and not tuned.encoder.training
    enc = tuned.encoder.state_dict()
    assert not torch.equal(enc["conv.0.0.weight"], before["net.conv.0.0.weight"])  # the copy was trained
    assert not torch.equal(enc["fc1.weight"], before["net.fc1.weight"])
    # BatchNorm statistics of the copy are frozen too (eval mode throughout, as the paper's no-dropout phase).
    assert torch.equal(enc["conv.0.1.running_mean"], before["net.conv.0.1.running_mean"])
    assert not torch.equal(tuned.head.mlp[0].weight, head.head.mlp[0].weight)
    assert report["best_check"] == len(report["val_aupr_error_per_check"]) - 1
    assert len(report["val_aupr_error_per_check"]) == 1 + ft.CHECKS_PER_EPOCH  # check 0 is the phase-1 head
    assert tuned.params()["encoder"] == {"architecture": "small_cnn", "params": ARCH}


def test_the_best_validation_check_is_kept_including_the_phase_one_head(splits: Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    model, head = _setup()
    # Nothing after the start beats it: the phase-1 head and an unchanged encoder copy come back.
    values = iter([0.5, *([0.1] * 50)])
    monkeypatch.setattr(cf.Validation, "aupr_error", lambda *a: next(values))
    tuned, report = ft.finetune_confidnet(model, head, splits, TrainConfig(seed=0), epochs=1, arch_params=ARCH)
    assert report["best_check"] == 0
    for k, v in head.head.state_dict().items():
        assert torch.equal(tuned.head.state_dict()[k], v), k
    for k, v in model.net.state_dict().items():
        assert torch.equal(tuned.encoder.state_dict()[k], v), k


def test_the_kept_state_scores_the_recorded_best_through_its_own_encoder(splits: Splits) -> None:
    model, head = _setup()
    tuned, report = ft.finetune_confidnet(model, head, splits, TrainConfig(seed=0), epochs=1, arch_params=ARCH)
    with torch.no_grad():
        errors = (model.net(normalise(splits.val.x)).argmax(-1) != splits.val.y).numpy()
        # By hand, through the fine-tuned encoder (not the classifier's features).
        failure = 1 - tuned.head(tuned.encoder.forward_features(normalise(splits.val.x)))
    kept = average_precision_score(errors, failure.numpy())
    assert round(100 * kept, 3) == max(report["val_aupr_error_per_check"])
    assert cf.Validation.of(model, splits.val).aupr_error(tuned) == pytest.approx(kept)


def test_an_ensemble_is_refused(splits: Splits) -> None:
    _, head = _setup()
    ensemble = PackedEnsemble(members=2, **ARCH)
    with pytest.raises(TypeError, match="single SmallCNN"):
        ft.finetune_confidnet(ensemble, head, splits, TrainConfig(seed=0), epochs=1, arch_params=ARCH)
