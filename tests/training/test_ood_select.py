"""ID-only choices of OOD hyperparameters and of the served scorer (training/ood_select, scorer_fit)."""

from __future__ import annotations

import pytest
import torch

from models.architectures import SmallCNN
from models.deterministic import Deterministic
from models.ensemble import new_ensemble
from models.methods import build_model
from models.scorers.odin import ODIN, max_softmax
from models.scorers.registry import SCORERS, build_scorer
from tests.models.zoo_helpers import TINY_ARCH, randomise_batchnorm
from training.data import Split, Splits
from training.loop import MNIST_STD, normalise, served_temperature
from training.ood_select import (
    FGSM_STEP,
    batch_scores,
    choose_odin_eps,
    fgsm_proxy,
    odin_scores_by_eps,
    proxy_aurocs,
)
from training.scorer_fit import AUTO_CANDIDATES, fit_ood_scorer, fit_rows


def _model(seed: int = 0) -> Deterministic:
    torch.manual_seed(seed)
    net = SmallCNN(**TINY_ARCH)
    randomise_batchnorm(net, seed)
    return Deterministic(net).eval()


def _splits(n: int = 240) -> Splits:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 5
    x = (torch.rand(n, 1, 8, 8, generator=gen) * 0.5 + 0.1 * y.view(-1, 1, 1, 1)).clamp(0, 1)
    part = Split(x, y)
    return Splits(train=part, val=Split(x[:120], y[:120]), cal=part, fingerprint="")


def test_fgsm_proxy_steps_down_the_max_softmax_by_the_pixel_step() -> None:
    model = _model()
    x = torch.randn(6, 1, 8, 8)
    adv = fgsm_proxy(model, x, [MNIST_STD], batch_size=4)
    moved = (adv - x).abs()
    assert torch.all((moved == 0) | torch.isclose(moved, torch.tensor(FGSM_STEP / MNIST_STD)))
    with torch.no_grad():
        assert torch.all(max_softmax(model.sample_logits(adv), 1.0) < max_softmax(model.sample_logits(x), 1.0))


@pytest.mark.parametrize("temperature", [1000.0, 2.0])
@pytest.mark.parametrize("reduction", ["predictive", "mean_softmax"])
def test_odin_scores_by_eps_equal_the_odin_scorer(temperature: float, reduction: str) -> None:
    # A 3-member ensemble: with S > 1 the two reductions give different scores, so a
    # reduction that is not passed through to both the gradient and the score shows.
    torch.manual_seed(1)
    model, x = new_ensemble(3, **TINY_ARCH).eval(), torch.randn(7, 1, 8, 8)
    grid = (0.0, 0.002, 0.03)
    rows = odin_scores_by_eps(model, x, grid, [MNIST_STD], batch_size=3, temperature=temperature, reduction=reduction)
    for i, eps in enumerate(grid):
        want = batch_scores({"o": ODIN(temperature, eps, [MNIST_STD], reduction)}, model, x)["o"]
        torch.testing.assert_close(rows[i], want)


def test_choose_odin_eps_takes_the_best_proxy_auroc_and_the_smaller_eps_on_ties() -> None:
    model = _model(2)
    x = torch.randn(40, 1, 8, 8)
    eps, aurocs = choose_odin_eps(model, x, fgsm_proxy(model, x, [MNIST_STD]), [MNIST_STD], grid_eps=(0.0, 0.001, 0.5))
    assert set(aurocs) == {"0.0", "0.001", "0.5"}
    best = max(aurocs.values())
    assert aurocs[str(eps)] == best and all(float(e) >= eps for e, a in aurocs.items() if a == best)
    # Identical inputs on both sides: every eps ties at AUROC 50, so the smallest wins.
    assert choose_odin_eps(model, x, x.clone(), [MNIST_STD], grid_eps=(0.002, 0.001))[0] == 0.001


def test_auto_fits_every_candidate_and_serves_the_best_by_the_proxy() -> None:
    model, splits = _model(3), _splits()
    scorer, report = fit_ood_scorer("auto", model, splits, served_temperature(model, splits.val))
    aurocs = report["auto_proxy_auroc"]
    assert set(aurocs) == set(AUTO_CANDIDATES)
    assert scorer.name == report["auto_chosen"] and aurocs[scorer.name] == max(aurocs.values())
    assert type(scorer) is SCORERS[scorer.name]


def test_auto_ranks_the_candidates_at_the_served_temperature() -> None:
    # MSP, entropy and mutual information change with the temperature: the choice must score
    # them as the bundle will serve them (the served temperature, fitted on val), not at T = 1.
    model, splits = build_model("ensemble", "small_cnn", TINY_ARCH, {"members": 3}).eval(), _splits()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    temperature = served_temperature(model, splits.val)
    _, report = fit_ood_scorer("auto", model, splits, temperature)
    assert report["auto_temperature"] == pytest.approx(temperature) and abs(temperature - 1.0) > 0.05
    n = fit_rows(len(splits.val))
    x = normalise(splits.val.x[n : 2 * n])  # the part no candidate was fitted on
    proxies = fgsm_proxy(model, x, [MNIST_STD])
    scorers = {n: build_scorer(n) for n in ("msp", "entropy", "mutual_information")}
    served = proxy_aurocs(scorers, model, x, proxies, temperature)
    assert all(report["auto_proxy_auroc"][n] == pytest.approx(a) for n, a in served.items())
    assert proxy_aurocs(scorers, model, x, proxies, 1.0) != pytest.approx(served)


def test_auto_on_a_sampled_model_without_layers() -> None:
    model = build_model("variational", "small_cnn", TINY_ARCH, {"num_samples": 3, "seed": 0}).eval()
    splits = _splits()
    _, report = fit_ood_scorer("auto", model, splits, served_temperature(model, splits.val))
    names = set(report["auto_proxy_auroc"])
    assert "mahalanobis_layers" not in names and {"mutual_information", "entropy"} <= names


@pytest.mark.parametrize("name", ["odin", "mahalanobis_layers"])
def test_named_scorers_are_fitted_and_score_in_distribution_data(name: str) -> None:
    splits = _splits()
    model = _model(4)
    scorer, report = fit_ood_scorer(name, model, splits, 1.0)  # a named scorer: the temperature is auto's only
    assert scorer.name == name
    if name == "odin":
        assert report["odin_temperature"] == 1000.0 and str(report["odin_eps"]) in report["odin_proxy_auroc_by_eps"]
        assert scorer.params()["reduction"] == "predictive"  # what a new bundle's manifest stores
    scores = batch_scores({name: scorer}, model, normalise(splits.val.x))[name]
    assert scores.shape == (120,) and torch.isfinite(scores).all()
