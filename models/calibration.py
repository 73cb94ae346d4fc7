"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

One scalar T > 0 divides every logit sample; it is fitted by minimising the NLL of the
sample-averaged probabilities on held-out data, so it also works for ensembles and MC
dropout (the averaged predictive is what the service reports).
"""

from __future__ import annotations

import torch

from models.uncertainty import predictive_log_probs


def predictive_nll(logit_samples: torch.Tensor, labels: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Mean NLL of the averaged predictive; logits ``[S, N, K]``, labels ``[N]``."""
    return -predictive_log_probs(logit_samples, temperature).gather(1, labels[:, None]).mean()


def fit_temperature(logit_samples: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Return the T that minimises validation NLL. Optimises log T so T stays positive."""
    if logit_samples.dim() == 2:
        logit_samples = logit_samples.unsqueeze(0)
    logits = logit_samples.detach().float()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = predictive_nll(logits, labels, log_t.exp())
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 100.0))
