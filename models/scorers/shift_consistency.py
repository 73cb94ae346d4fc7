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

Cost: one more forward of the model for the 8 shifted copies (8x the batch), so 9x the
classifier's compute per image. The shift rolls the normalised input (`torch.roll`): on
MNIST-like digits the border is background, so what wraps around is background too.
"""

from __future__ import annotations

import torch

from models.scorers.base import ScoreInput, Scorer
from models.uncertainty import mean_probs

#: The 8 one-pixel shifts (dx, dy), diagonals included.
SHIFTS: tuple[tuple[int, int], ...] = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0))


def shifted(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[len(SHIFTS) * B, C, H, W]``: every shift of every input, shift-major."""
    return torch.cat([torch.roll(x, shifts=(dy, dx), dims=(-2, -1)) for dx, dy in SHIFTS])


class ShiftConsistency(Scorer):
    name = "shift_consistency"

    def score(self, inp: ScoreInput) -> torch.Tensor:
        probs = mean_probs(inp.logits, inp.temperature)  # [B, K], as served
        mcp, pred = probs.max(-1)
        b = probs.shape[0]
        with torch.no_grad():  # the served prediction is fixed: nothing to differentiate
            moved = mean_probs(inp.model.sample_logits(shifted(inp.x)), inp.temperature)  # [8B, K]
        held = moved.reshape(len(SHIFTS), b, -1).gather(-1, pred.expand(len(SHIFTS), b).unsqueeze(-1)).squeeze(-1)  # [8, B]
        return 1.0 - (mcp + held.mean(0)) / 2
