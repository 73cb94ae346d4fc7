"""`--failure-scorer auto`: the served failure score is the best on the cal split, by AUPR-Error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.architectures import SmallCNN
from models.base import UncertaintyModel
from models.deterministic import Deterministic
from models.scorers.base import ScoreInput, Scorer
from training.data import Split, Splits, make_splits
from training.failure_select import aupr_errors, choose_failure_scorer, plain_candidates
from training.loop import (
    features_and_logits,
    normalise,
    predict_logits,
    served_temperature,
)


class Fixed(Scorer):
    """Stand-in for a learned head: returns given scores for the whole cal split at once."""

    name = "fixed"

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def score(self, inp: ScoreInput) -> torch.Tensor:
        assert len(inp.x) == len(self.scores)  # scored in one call, rows in cal order
        return self.scores


@pytest.fixture(scope="module")
def setup(data_dir: Path) -> tuple[UncertaintyModel, Splits, torch.Tensor]:
    torch.manual_seed(0)
    splits = make_splits(data_dir, val_size=600, train_size=100)
    model = Deterministic(SmallCNN()).eval()  # untrained: errors and successes both on cal
    with torch.no_grad():
        wrong = predict_logits(model.sample_logits, splits.cal)[0].argmax(-1) != splits.cal.y
    assert 0 < int(wrong.sum()) < len(wrong)
    return model, splits, wrong


def test_a_head_that_knows_the_errors_is_served(setup: tuple[UncertaintyModel, Splits, torch.Tensor]) -> None:
    model, splits, wrong = setup
    oracle = Fixed(wrong.float())
    chosen, report = choose_failure_scorer(model, {"confidnet": oracle}, splits, served_temperature(model, splits.val))
    assert chosen is oracle
    assert report["auto_chosen"] == "confidnet"
    assert report["auto_cal_aupr_error"]["confidnet"] == pytest.approx(100.0)
    assert set(report["auto_cal_aupr_error"]) == {"msp", "entropy", "confidnet"}  # no MI for S = 1


def test_a_head_worse_than_mcp_is_not_served(setup: tuple[UncertaintyModel, Splits, torch.Tensor]) -> None:
    model, splits, wrong = setup
    backwards = Fixed(1.0 - wrong.float())  # ranks every success above every error
    chosen, report = choose_failure_scorer(model, {"confidnet": backwards}, splits, served_temperature(model, splits.val))
    table = report["auto_cal_aupr_error"]
    assert report["auto_chosen"] == max(table, key=table.get) != "confidnet"
    assert chosen.name == report["auto_chosen"]


def test_ties_go_to_the_earlier_candidate(setup: tuple[UncertaintyModel, Splits, torch.Tensor]) -> None:
    model, splits, wrong = setup
    a, b = Fixed(wrong.float()), Fixed(wrong.float())
    chosen, report = choose_failure_scorer(model, {"first": a, "second": b}, splits, served_temperature(model, splits.val))
    assert chosen is a and report["auto_chosen"] == "first"


def test_scores_use_the_calibrated_prediction_of_the_cal_split(setup: tuple[UncertaintyModel, Splits, torch.Tensor]) -> None:
    model, splits, wrong = setup
    feats, logits = features_and_logits(model, splits.cal.x)
    inp = ScoreInput(model, normalise(splits.cal.x), logits, feats, 1.0)
    # Errors defined against other labels would not give the oracle a perfect score.
    assert aupr_errors({"oracle": Fixed(wrong.float())}, inp, splits.cal.y)["oracle"] == pytest.approx(100.0)
    assert aupr_errors({"oracle": Fixed(wrong.float())}, inp, splits.cal.y.roll(1))["oracle"] < 100.0


def test_mutual_information_competes_only_for_sampled_models() -> None:
    assert list(plain_candidates(1)) == ["msp", "entropy"]
    assert list(plain_candidates(5)) == ["msp", "entropy", "mutual_information"]


def test_without_errors_on_cal_mcp_is_served(setup: tuple[UncertaintyModel, Splits, torch.Tensor]) -> None:
    model, splits, _ = setup
    with torch.no_grad():
        predicted = predict_logits(model.sample_logits, splits.cal)[0].argmax(-1)
    perfect = Splits(splits.train, splits.val, Split(splits.cal.x, predicted), splits.fingerprint)
    chosen, report = choose_failure_scorer(model, {"confidnet": Fixed(torch.rand(len(predicted)))}, perfect, served_temperature(model, perfect.val))
    assert report["auto_chosen"] == "msp" and chosen.name == "msp"
    assert report["auto_cal_aupr_error"]["confidnet"] is None  # undefined, and stored as such
