"""Choosing OOD hyperparameters, and the served OOD scorer, from in-distribution data only.

No OOD data set is ever used. Where a choice needs something to separate ID data from,
we use proxy outliers made from ID validation inputs themselves: their FGSM adversarial
versions (Lee et al. 2018, Sec. 3.2 and Table 2, "validation on adversarial samples";
their code uses FGSM with a step of 0.05 in pixel units, which we copy a priori). A
score that separates ID inputs from inputs pushed off the data manifold by a small
worst-case step is preferred; AUROC of ID validation (positive) vs proxy measures it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from models.base import UncertaintyModel
from models.scorers.base import ScoreInput, Scorer
from models.scorers.odin import log_max_softmax_grad, max_softmax, odin_step
from training.metrics import ood_detection

#: FGSM step of the proxy outliers, pixel units (Lee et al.'s ADV_Samples.py, FGSM).
FGSM_STEP = 0.05
#: Liang et al.'s eps search range [0, 0.004] (pixel units), at 0.0005 spacing.
LIANG_GRID_EPS: tuple[float, ...] = tuple(round(i * 0.0005, 4) for i in range(9))
#: ODIN's T, fixed a priori: Liang et al. find T = 1000 best and saturated.
ODIN_T = 1000.0


def fgsm_proxy(model: UncertaintyModel, x: torch.Tensor, std: Sequence[float] | None, batch_size: int = 500) -> torch.Tensor:
    """Proxy outliers ``[N, C, H, W]``: one signed-gradient step *down* the log max softmax (T = 1).

    `x` is normalised; the step is `FGSM_STEP` pixels (divided by `std`, see `odin_step`).
    The predicted label stands in for the true one, so any unlabelled ID set works.
    """
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        out.append(xb - odin_step(FGSM_STEP, std, xb) * torch.sign(log_max_softmax_grad(model, xb, 1.0)))
    return torch.cat(out)


def batch_scores(
    scorers: Mapping[str, Scorer], model: UncertaintyModel, x: torch.Tensor, temperature: float = 1.0, batch_size: int = 500
) -> dict[str, torch.Tensor]:
    """Scores ``[N]`` of every scorer on normalised inputs `x`, one model forward per batch.

    Not under inference mode: ODIN differentiates through the model (it enables
    gradients for itself); the others run under `no_grad`.
    """
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in scorers}
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        with torch.no_grad():
            feats = model.features(xb)
            logits = model.head_samples(feats)
        inp = ScoreInput(model=model, x=xb, logits=logits, features=feats, temperature=temperature)
        for name, scorer in scorers.items():
            if scorer.needs_grad:
                parts[name].append(scorer.score(inp).detach())
            else:
                with torch.no_grad():
                    parts[name].append(scorer.score(inp))
    return {name: torch.cat(p).float() for name, p in parts.items()}


def proxy_aurocs(
    scorers: Mapping[str, Scorer], model: UncertaintyModel, x_id: torch.Tensor, x_proxy: torch.Tensor, temperature: float = 1.0
) -> dict[str, float]:
    """AUROC (%) of ID inputs (positive) vs their proxy outliers, per scorer, scoring at `temperature`."""
    s_id = batch_scores(scorers, model, x_id, temperature)
    s_px = batch_scores(scorers, model, x_proxy, temperature)
    return {name: ood_detection(s_id[name], s_px[name])["auroc"] for name in scorers}


def odin_scores_by_eps(
    model: UncertaintyModel,
    x: torch.Tensor,
    grid_eps: Sequence[float],
    std: Sequence[float] | None,
    batch_size: int = 500,
    temperature: float = ODIN_T,
    reduction: str = "predictive",
) -> torch.Tensor:
    """ODIN scores ``[len(grid_eps), N]`` at `temperature` for every eps, one backward pass per batch.

    Equal to ``ODIN(temperature, eps, std, reduction).score`` row by row (the gradient does not depend on eps).
    """
    rows = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        sign = torch.sign(log_max_softmax_grad(model, xb, temperature, reduction))
        with torch.no_grad():
            perturbed = (model.sample_logits(xb + odin_step(float(e), std, xb) * sign) for e in grid_eps)
            rows.append(torch.stack([1.0 - max_softmax(logits, temperature, reduction) for logits in perturbed]))
    return torch.cat(rows, dim=1).float()


def choose_odin_eps(
    model: UncertaintyModel,
    x_id: torch.Tensor,
    x_proxy: torch.Tensor,
    std: Sequence[float] | None,
    grid_eps: Sequence[float] = LIANG_GRID_EPS,
) -> tuple[float, dict[str, float]]:
    """ODIN's eps (T = `ODIN_T`): the grid value with the best ID-vs-proxy AUROC; ties -> smaller eps.

    The Generalized-ODIN criterion (Hsu et al. 2020: the highest mean perturbed ID max
    softmax) always picks the largest eps on MNIST, since a signed-gradient step
    raises every max softmax; the adversarial proxy also asks that outliers gain less.
    Returns (eps, {eps: AUROC %}).
    """
    s_id, s_px = odin_scores_by_eps(model, x_id, grid_eps, std), odin_scores_by_eps(model, x_proxy, grid_eps, std)
    aurocs = {str(float(e)): ood_detection(s_id[i], s_px[i])["auroc"] for i, e in enumerate(grid_eps)}
    best = max(aurocs.values())
    eps = min(float(e) for e in aurocs if aurocs[e] >= best)
    return eps, aurocs
