"""Energy score (Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection",
NeurIPS 2020): E(x) = -T * logsumexp_k(f_k(x) / T). Higher energy = more likely OOD.

The energy is the negative log of the classifier's unnormalised input density
(the free energy of the logits read as an energy-based model), so unlike the max
softmax it is not squashed to [0, 1] and does not saturate on confident inputs.
"""

from __future__ import annotations

from typing import Any

import torch

from models.scorers.base import ScoreInput, Scorer


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``[..., K] -> [...]``: ``-T * logsumexp(logits / T)`` over the last axis."""
    return -temperature * torch.logsumexp(logits / temperature, dim=-1)


class Energy(Scorer):
    """OOD score = energy of the logits (higher = more likely out of distribution).

    Sampled models (logits ``[S, B, K]``, S > 1): the score is the energy of the
    sample-averaged logits, ``E(mean_s f_s(x))`` (the issue's "sample-averaged quantities").
    By convexity of logsumexp it equals the mean of the samples' energies plus a
    non-negative Jensen gap, ``mean_s LSE(f_s) - LSE(mean_s f_s)``, that grows when the
    samples disagree on which class their logits favour: an epistemic term, so inputs the
    members read differently score as more out of distribution. (Per-sample constant
    logit offsets cancel the same way under both reductions, so they are no reason to
    average energies instead.) The reduction rests on that argument alone: no OOD data
    chose it (issue 4). For S = 1 both are Liu et al.'s score.

    `temperature` is the energy's own T (Liu et al. use T = 1), independent of the
    calibration temperature in `ScoreInput`, which only rescales confidence.

    Args:
        temperature: T > 0 of the energy. Served with T = 1, fixed a priori as in Liu et
            al. (nothing is fitted, so no data, ID or OOD, is used).
    """

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = float(temperature)

    def score(self, inp: ScoreInput) -> torch.Tensor:
        """Scores ``[B]`` from logits ``[S, B, K]``: the energy of the logits averaged over S."""
        return energy(inp.logits.mean(0), self.temperature)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
