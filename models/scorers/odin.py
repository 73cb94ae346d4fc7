"""ODIN (Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image
Detection in Neural Networks", ICLR 2018): temperature scaling plus one signed-gradient
input step that raises the max softmax; in-distribution inputs gain more than OOD ones.

Score = 1 - max_k p_k(x'; T), with x' = x + eps * sign(grad_x log p_yhat(x; T)) (the
paper's x - eps * sign(-grad_x log S_yhat)). Higher = more likely out of distribution.

Sampled models (ensembles, MC dropout, ...): ODIN tempers *logits*, and the logits of a
sampled model's predictive distribution ``pbar = mean_s softmax(f_s)`` are ``log pbar``
(up to a per-input constant, which the softmax ignores), so p(x; T) = softmax(log pbar / T)
(``reduction="predictive"``). For S = 1 that is Liang et al.'s softmax(f / T) exactly,
since log softmax(f) = f - logsumexp(f). The alternative, averaging the members' tempered
softmaxes (``"mean_softmax"``), is to first order in 1/T the softmax of the *mean logits*
at a high T: it forgets how far the members disagree, which is what an ensemble adds.
Bundles written before this choice existed averaged tempered softmaxes; their manifests
carry no `reduction` and load as "mean_softmax" (`ODIN.upgrade_params`), so the
thresholds fitted on that score keep their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.base import UncertaintyModel
from models.scorers.base import Graph, ScoreInput, Scorer, record_forward
from models.uncertainty import mean_probs, predictive_log_probs

#: How sample logits ``[S, B, K]`` become tempered class probabilities (module docstring).
REDUCTIONS: tuple[str, ...] = ("predictive", "mean_softmax")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown ODIN reduction {reduction!r}; known: {list(REDUCTIONS)}")
    return reduction


def tempered_probs(logits: torch.Tensor, temperature: float, reduction: str = "predictive") -> torch.Tensor:
    """``[S, B, K] -> [B, K]``: ODIN's class probabilities at temperature T (see `REDUCTIONS`)."""
    if check_reduction(reduction) == "mean_softmax":
        return mean_probs(logits, temperature)
    return torch.softmax(predictive_log_probs(logits) / temperature, dim=-1)


def max_softmax(logits: torch.Tensor, temperature: float, reduction: str = "predictive") -> torch.Tensor:
    """``[S, B, K] -> [B]``: the largest of `tempered_probs`."""
    return tempered_probs(logits, temperature, reduction).max(-1).values


def _require_eval_batchnorm(model: nn.Module) -> None:
    # Batch statistics would couple the inputs of a batch, so one input's gradient (and
    # score) would depend on its neighbours. We refuse rather than flip a shared model.
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()):
        raise RuntimeError("ODIN needs BatchNorm in eval mode: call model.eval() first")


def log_max_softmax_grad(
    model: UncertaintyModel, x: torch.Tensor, temperature: float, reduction: str = "predictive"
) -> torch.Tensor:
    """``grad_x sum_b log p_{yhat_b}(x_b; T)``, shape ``[B, C, H, W]``, in one backward pass.

    p is `tempered_probs` of ``model.sample_logits`` ``[S, B, K]`` and yhat its argmax. The
    loss is a sum over the batch and, with BatchNorm in eval mode, input b only reaches
    output b, so row b of the gradient depends on ``x_b`` alone.
    `torch.autograd.grad` w.r.t. x only: parameter ``.grad`` fields are never touched.
    """
    _require_eval_batchnorm(model)
    graph, _ = record_forward(model, x)
    return graph_grad(graph, temperature, reduction)


def graph_grad(graph: Graph, temperature: float, reduction: str = "predictive") -> torch.Tensor:
    """``grad_x sum_b log p_{yhat_b}(x_b; T)`` of an already recorded forward (see above).

    Single use: the backward frees the graph's saved tensors (keeping them measured
    slower, the allocator could not reuse their memory for the next forward).
    """
    with torch.enable_grad():
        probs = tempered_probs(graph.logits, temperature, reduction)  # [B, K]
        log_top = torch.log(probs.max(-1).values.clamp_min(1e-30))  # [B]; max = p at argmax
        (grad,) = torch.autograd.grad(log_top.sum(), graph.x_leaf)
    return grad


def odin_step(eps: float, std: Sequence[float] | None, x: torch.Tensor) -> torch.Tensor:
    """Step size in normalised units, broadcastable to ``x`` ``[B, C, H, W]``: eps / std_c.

    Liang et al.'s eps is in pixel units ([0, 1]); inputs here are normalised
    ``(p - mean) / std``, so a pixel step eps is eps / std_c per channel (as their code
    does). With ``std=None`` eps is taken in normalised units as is.
    """
    if std is None:
        return torch.tensor(eps, dtype=x.dtype, device=x.device)
    s = torch.as_tensor(list(std), dtype=x.dtype, device=x.device)
    if s.numel() not in (1, x.shape[1]):
        raise ValueError(f"std has {s.numel()} entries for {x.shape[1]} channels")
    return eps / s.view(1, -1, *([1] * (x.dim() - 2)))


class ODIN(Scorer):
    """ODIN OOD score ``[B]`` (higher = more likely out of distribution).

    Sampled models (logits ``[S, B, K]``): yhat and the max softmax use `tempered_probs`
    with this scorer's `reduction`, for the gradient as for the score. `temperature` is
    ODIN's own T (Liang et al.: T = 1000), not the calibration T of `ScoreInput`.
    With ``eps == 0`` the pipeline's logits are reused (no extra forward pass). Else the
    gradient comes from the pipeline's own recorded forward when `ScoreInput.graph` has
    it (the served path), or from a fresh forward; a stochastic model (MC dropout) draws
    fresh samples for the score pass on x'.

    Args:
        temperature: ODIN's T > 0. eps: step (pixel units if `std` is given, see
            `odin_step`); default 0.0014 is Liang et al.'s CIFAR-10 choice. std: the inputs' std.
        reduction: "predictive" (softmax(log pbar / T), new bundles) or "mean_softmax" (the
            mean of the samples' softmax(f_s / T), bundles written before); equal for S = 1.

    Served hyperparameters, chosen on in-distribution data only (training/scorer_fit.py):
    T = 1000 a priori (Liang et al.); eps from Liang et al.'s range [0, 0.004] by the best
    AUROC of ID validation inputs vs their FGSM-perturbed copies (Lee et al. 2018's
    validation without OOD data; `training.ood_select.choose_odin_eps`). Generalized ODIN's
    criterion (Hsu et al. 2020: the eps with the highest mean perturbed ID max softmax) is
    not used: a signed-gradient step raises every max softmax, so it picks the largest eps.
    """

    name = "odin"

    def __init__(
        self, temperature: float = 1000.0, eps: float = 0.0014, std: Sequence[float] | None = None, reduction: str = "predictive"
    ) -> None:
        super().__init__()
        if temperature <= 0 or eps < 0:
            raise ValueError("need temperature > 0 and eps >= 0")
        self.temperature = float(temperature)
        self.eps = float(eps)
        self.std = None if std is None else [float(s) for s in std]
        self.reduction = check_reduction(reduction)  # refused when the manifest is read, not at the first request

    @classmethod
    def upgrade_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        # A manifest from before `reduction` existed was fitted (threshold included) on the
        # mean of tempered softmaxes; loading it as "predictive" would shift its pass rate.
        return {"reduction": "mean_softmax", **params}

    @property
    def needs_grad(self) -> bool:
        # Without a step ODIN is the tempered max softmax of the pipeline's own logits:
        # no gradient, so the pipeline keeps its plain inference-mode forward.
        return self.eps > 0.0

    def perturb(self, model: UncertaintyModel, x: torch.Tensor, graph: Graph | None = None) -> torch.Tensor:
        """The preprocessed input x' ``[B, C, H, W]`` (one step up the log max softmax).

        With `graph` (the pipeline's own forward of `x`, recorded by autograd) the gradient
        comes from it: one forward fewer per batch, the same numbers.
        """
        _require_eval_batchnorm(model)
        grad = graph_grad(graph if graph is not None else record_forward(model, x)[0], self.temperature, self.reduction)
        return x.detach() + odin_step(self.eps, self.std, x) * torch.sign(grad)

    def score(self, inp: ScoreInput) -> torch.Tensor:
        """Scores ``[B]`` = 1 - max_k p_k(x'; T), p = `tempered_probs` of the logit samples."""
        if self.eps == 0.0:
            return 1.0 - max_softmax(inp.logits.detach(), self.temperature, self.reduction)
        x_adv = self.perturb(inp.model, inp.x, inp.graph)
        with torch.no_grad():
            return 1.0 - max_softmax(inp.model.sample_logits(x_adv), self.temperature, self.reduction)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "eps": self.eps, "std": self.std, "reduction": self.reduction}
