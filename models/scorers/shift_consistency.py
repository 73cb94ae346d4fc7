"""Shift consistency: how firmly the served prediction holds when the digit moves one pixel.

score = 1 - (MCP + mean_s p_s(y_hat)) / 2, where y_hat is the served prediction, MCP its
probability, and p_s the calibrated predictive of the input shifted by s, over the 8 shifts
of one pixel (diagonals included). Higher = more likely wrong, as for every failure score.

Why: a digit the network reads firmly keeps its class when nudged; a misread one (a 7 read
as a 1 by one stroke) often loses it. MCP sees one position only. On the zoo's deterministic
networks of seeds 0 and 10 (docs/experiments.md, 2026-12-01), test AUPR-Error went from 55.5
to 65.3 and from 42.7 to 53.4 (validation: 41.9 to 55.7, 31.9 to 40.3); a ConfidNet head
given the same shifted probabilities as inputs learnt less from the training passes than this
average holds (53.7 on seed 0). Not a learned scorer: nothing to fit.

Cost: 8 more forwards of the model, one per shift, so 9x the classifier's compute per image
(measured on a deterministic network: 1.0 to 7.6 ms for one image, 9.4x for a batch of 64). The shift rolls the normalised input (`torch.roll`): on
MNIST-like digits the border is background, so what wraps around is background too.
"""

from __future__ import annotations

import torch

from models.scorers.base import ScoreInput, Scorer
from models.uncertainty import mean_probs

#: The 8 one-pixel shifts (dx, dy), diagonals included.
SHIFTS: tuple[tuple[int, int], ...] = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0))


class ShiftConsistency(Scorer):
    name = "shift_consistency"

    def score(self, inp: ScoreInput) -> torch.Tensor:
        probs = mean_probs(inp.logits, inp.temperature)  # [B, K], as served
        mcp, pred = probs.max(-1)
        held = torch.zeros_like(mcp)
        # One forward per shift, each the batch's own size: the 8 shifts in one batch of 8B
        # held 8 times the model's activations (an ensemble's evaluation batch ran out of memory).
        with torch.no_grad():  # the served prediction is fixed: nothing to differentiate
            for dx, dy in SHIFTS:
                moved = mean_probs(inp.model.sample_logits(torch.roll(inp.x, shifts=(dy, dx), dims=(-2, -1))), inp.temperature)
                held += moved.gather(-1, pred.unsqueeze(-1)).squeeze(-1)
        return 1.0 - (mcp + held / len(SHIFTS)) / 2
