"""Build and fit the OOD scorer a bundle will serve, from in-distribution data only.

- msp, energy, entropy, mutual_information: nothing to fit.
- odin: T = 1000 (Liang et al.), eps from Liang et al.'s range [0, 0.004] by the best
  AUROC of ID validation inputs vs their FGSM proxies (`training.ood_select`).
- mahalanobis: class means and tied covariance of the model's features on the training set.
- mahalanobis_layers: the same per layer on the training set; each layer's score is
  standardised on held-out validation inputs and the layers are summed with equal weights.
- auto: every candidate above that the model supports, fitted as listed; the served one
  has the best AUROC of ID validation inputs vs their FGSM proxies, measured on a part of
  the validation split that no candidate was fitted on (ties: the earlier candidate).

Validation split use: ``val[:n]`` fits (ODIN's eps, the layer standardisation),
``val[n:2n]`` chooses (auto); n = min(`VAL_FIT_SIZE`, len(val) // 2). The served OOD
threshold is fitted on ``val[n:]`` only (training/finalize.py).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from models.base import UncertaintyModel
from models.scorers.base import Scorer
from models.scorers.mahalanobis import Mahalanobis
from models.scorers.mahalanobis_layers import MahalanobisLayers
from models.scorers.odin import ODIN
from models.scorers.registry import build_scorer
from training.data import Splits
from training.loop import MNIST_STD, features_and_logits, normalise
from training.ood_select import ODIN_T, choose_odin_eps, fgsm_proxy, proxy_aurocs

#: Fitting subsets: enough for stable statistics, cheap on 2 cores.
VAL_FIT_SIZE = 2000
MAHALANOBIS_FIT_SIZE = 20_000
#: Scorers already fitted on this model by name (the failure scorer's), with their reports:
#: an OOD choice of the same name reuses the fit instead of repeating it.
Fitted = Mapping[str, tuple[Scorer, dict[str, Any]]]

#: Candidates of `auto`, in order of preference on ties (ODIN first: the issue's default).
AUTO_CANDIDATES = ("odin", "energy", "msp", "mahalanobis", "mahalanobis_layers")
SAMPLED_CANDIDATES = ("mutual_information", "entropy")


@torch.no_grad()
def _layer_features(model: UncertaintyModel, x: torch.Tensor, batch_size: int = 1000) -> list[torch.Tensor]:
    """Per layer ``[S_f, N, D_l]`` of pixels `x` ``[N, C, H, W]``."""
    batches = [model.layer_features(normalise(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return [torch.cat(layer, dim=1) for layer in zip(*batches, strict=True)]


def fit_rows(val_size: int) -> int:
    """How many leading validation rows the scorers are fitted on (`val[:n]`)."""
    return min(VAL_FIT_SIZE, val_size // 2)


def _val_parts(splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit part, choice part) of the validation pixels, disjoint."""
    n = fit_rows(len(splits.val))
    return splits.val.x[:n], splits.val.x[n : 2 * n]


def fit_named(name: str, model: UncertaintyModel, splits: Splits) -> tuple[Scorer, dict[str, Any]]:
    """One scorer by name, fitted on ID data; returns it and what was chosen (for the manifest)."""
    model.eval()
    num_classes = int(splits.train.y.max()) + 1
    train = splits.train.head(MAHALANOBIS_FIT_SIZE)
    fit_x, _ = _val_parts(splits)
    if name == "odin":
        x_fit = normalise(fit_x)
        eps, aurocs = choose_odin_eps(model, x_fit, fgsm_proxy(model, x_fit, [MNIST_STD]), [MNIST_STD])
        report = {"odin_temperature": ODIN_T, "odin_eps": eps, "odin_proxy_auroc_by_eps": aurocs}
        return ODIN(temperature=ODIN_T, eps=eps, std=[MNIST_STD]), report
    if name == "mahalanobis":
        return Mahalanobis.from_features(features_and_logits(model, train.x)[0], train.y, num_classes), {}
    if name == "mahalanobis_layers":
        layers = _layer_features(model, train.x)
        scorer = MahalanobisLayers(num_classes, [f.shape[-1] for f in layers])
        scorer.fit(layers, train.y, _layer_features(model, fit_x))
        return scorer, {}
    return build_scorer(name), {}


def fit_or_reuse(name: str, model: UncertaintyModel, splits: Splits, fitted: Fitted) -> tuple[Scorer, dict[str, Any]]:
    """`fit_named`, or a copy of the same fit done already (the fits are deterministic; a
    copy, since a bundle stores its failure and OOD scorers' tensors apart)."""
    if name in fitted:
        scorer, report = fitted[name]
        return copy.deepcopy(scorer), copy.deepcopy(report)
    return fit_named(name, model, splits)


def _supports_layers(model: UncertaintyModel, x: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            model.layer_features(normalise(x[:1]))
    except NotImplementedError:
        return False
    return True


def choose_auto(model: UncertaintyModel, splits: Splits, temperature: float, fitted: Fitted) -> tuple[Scorer, dict[str, Any]]:
    """Fit every supported candidate and keep the best by the ID-only FGSM-proxy AUROC, scored at
    the served `temperature`."""
    model.eval()
    _, choice_x = _val_parts(splits)
    with torch.no_grad():
        sampled = model.sample_logits(normalise(choice_x[:2])).shape[0] > 1
    names = [n for n in AUTO_CANDIDATES if n != "mahalanobis_layers" or _supports_layers(model, choice_x)]
    names += list(SAMPLED_CANDIDATES) if sampled else []
    candidates = {n: fit_or_reuse(n, model, splits, fitted) for n in names}
    x_choice = normalise(choice_x)
    # MSP, entropy and mutual information depend on the temperature: rank them as served.
    proxies = fgsm_proxy(model, x_choice, [MNIST_STD])
    aurocs = proxy_aurocs({n: s for n, (s, _) in candidates.items()}, model, x_choice, proxies, temperature)
    best = max(aurocs.values())
    chosen = next(n for n in names if aurocs[n] >= best)
    scorer, report = candidates[chosen]
    rule = "best AUROC of ID validation vs their FGSM proxies (Lee et al. 2018), on validation inputs no candidate was fitted on"
    return scorer, {**report, "auto_chosen": chosen, "auto_rule": rule, "auto_proxy_auroc": aurocs, "auto_temperature": temperature}


def fit_ood_scorer(name: str, model: UncertaintyModel, splits: Splits, temperature: float, fitted: Fitted | None = None) -> tuple[Scorer, dict[str, Any]]:
    """The scorer `name` (or the `auto` choice, at the served `temperature`) fitted on ID data,
    and what was chosen; a fit in `fitted` is reused, not repeated."""
    if name == "auto":
        return choose_auto(model, splits, temperature, fitted or {})
    return fit_or_reuse(name, model, splits, fitted or {})
