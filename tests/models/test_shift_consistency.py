"""The shift-consistency failure score: the served prediction's probability under one-pixel shifts."""

from __future__ import annotations

import math

import pytest
import torch

from models.scorers.registry import build_scorer
from models.scorers.shift_consistency import SHIFTS, ShiftConsistency
from models.uncertainty import mean_probs
from tests.models.test_ood_scorers import LinearHeads, score_input, tiny_cnn


def centre_reader() -> LinearHeads:
    """Two classes on 3x3 images: class 0's logit is 10 x the centre pixel, class 1's the sum of
    all nine. A lone bright centre pixel reads as class 0; moved anywhere, as class 1."""
    w0 = torch.zeros(9, dtype=torch.float64)
    w0[4] = 10.0
    w1 = torch.ones(9, dtype=torch.float64)
    return LinearHeads(torch.stack([w0, w1]).unsqueeze(0))  # one sample: [S=1, K=2, D=9]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_a_reading_every_shift_changes_scores_by_hand(temperature: float) -> None:
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 1.0
    score = ShiftConsistency().score(score_input(centre_reader(), x, temperature))
    clean = 1 / (1 + math.exp(-(10 - 1) / temperature))  # p(class 0) at the centre
    moved = 1 / (1 + math.exp(-(0 - 1) / temperature))  # p(class 0) once the pixel left it, in all 8 shifts
    assert score.item() == pytest.approx(1 - (clean + moved) / 2, rel=1e-12)
    msp = build_scorer("msp").score(score_input(centre_reader(), x, temperature))
    assert score.item() > msp.item() + 0.3  # MCP sees only the confident centred reading


def test_a_model_blind_to_position_scores_as_msp() -> None:
    """Features that ignore where the ink is (the pixels' sum): every shift reads alike."""
    torch.manual_seed(0)
    w = torch.randn(2, 4, 1, dtype=torch.float64)  # two samples, four classes, one feature
    model = LinearHeads(w)
    model.features = lambda x: x.flatten(1).sum(-1, keepdim=True).unsqueeze(0)  # type: ignore[method-assign]
    x = torch.rand(6, 1, 5, 5, dtype=torch.float64)
    inp = score_input(model, x, 1.5)
    torch.testing.assert_close(ShiftConsistency().score(inp), build_scorer("msp").score(inp))


def test_each_input_is_scored_as_alone_and_against_its_own_prediction() -> None:
    model = tiny_cnn(3)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    batch = ShiftConsistency().score(score_input(model, x, 1.3))
    alone = torch.cat([ShiftConsistency().score(score_input(model, x[i : i + 1], 1.3)) for i in range(5)])
    torch.testing.assert_close(batch, alone)
    # By hand for the first input: the clean prediction's probability at each of the 8 shifts.
    with torch.no_grad():
        p = mean_probs(model.sample_logits(x[:1]), 1.3)[0]
        held = [mean_probs(model.sample_logits(torch.roll(x[:1], (dy, dx), (-2, -1))), 1.3)[0, p.argmax()] for dx, dy in SHIFTS]
    assert len(set(SHIFTS)) == 8 and (0, 0) not in SHIFTS
    assert batch[0].item() == pytest.approx(1 - (p.max().item() + torch.stack(held).mean().item()) / 2, rel=1e-10)


def test_it_rebuilds_from_a_manifest_with_nothing_to_fit() -> None:
    scorer = build_scorer("shift_consistency", {})
    assert isinstance(scorer, ShiftConsistency) and scorer.params() == {} and not scorer.state_dict()
