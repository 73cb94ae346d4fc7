"""Last-layer Laplace: GGN = autograd Hessian, posterior covariance, evidence, sampling, round trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from models.architectures import SmallCNN
from models.laplace import (
    LastLayerLaplace,
    build_laplace,
    fit_last_layer_laplace,
    last_layer_ggn,
    log_marginal_likelihood,
)
from tests.models.zoo_helpers import TINY_ARCH, randomise_batchnorm, round_trip


def test_ggn_equals_the_autograd_hessian_of_the_nll() -> None:
    gen = torch.Generator().manual_seed(0)
    n, d, k = 7, 3, 4
    feats = torch.randn(n, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, k, (n,), generator=gen)
    theta = torch.randn(k, d + 1, generator=gen, dtype=torch.float64)

    def nll(flat: torch.Tensor) -> torch.Tensor:
        w = flat.view(k, d + 1)
        logits = feats @ w[:, :-1].T + w[:, -1]
        return torch.nn.functional.cross_entropy(logits, labels, reduction="sum")

    hessian = torch.autograd.functional.hessian(nll, theta.flatten())
    probs = torch.softmax(feats @ theta[:, :-1].T + theta[:, -1], dim=-1)
    assert torch.allclose(last_layer_ggn(feats, probs), hessian, atol=1e-10)


def test_log_marginal_likelihood_matches_a_direct_computation() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    h, eye = a @ a.T, torch.eye(5, dtype=torch.float64)
    theta = torch.randn(5, generator=gen, dtype=torch.float64)
    log_lik = -10.0
    lams = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    got = log_marginal_likelihood(torch.linalg.eigvalsh(h), float(theta @ theta), log_lik, lams)
    log_2pi = torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64))
    for lam, value in zip(lams.tolist(), got.tolist(), strict=True):
        prior = torch.distributions.MultivariateNormal(torch.zeros(5, dtype=torch.float64), eye / lam)
        # log p(D|theta*) + log p(theta*) + (P/2) log 2 pi - (1/2) log det(H + lambda I)
        expected = log_lik + prior.log_prob(theta) + 2.5 * log_2pi - 0.5 * torch.logdet(h + lam * eye)
        assert abs(value - float(expected)) < 1e-9


def _fitted(
    prior_precisions: list[float] | None = None, num_samples: int = 20, seed: int = 0
) -> tuple[LastLayerLaplace, torch.Tensor]:
    torch.manual_seed(0)
    net = SmallCNN(**TINY_ARCH)
    randomise_batchnorm(net)
    x, y = torch.randn(200, 1, 8, 8), torch.randint(0, 5, (200,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random net's evidence may peak at the grid edge
        model = fit_last_layer_laplace(net, (x, y), prior_precisions, num_samples=num_samples, seed=seed, chunk=64)
    return model.eval(), x


@torch.no_grad()
def test_posterior_samples_have_the_fitted_covariance() -> None:
    model, x = _fitted(prior_precisions=[3.0])
    net = model.net
    feats = net.forward_features(x)
    precision = last_layer_ggn(feats, torch.softmax(net.forward_head(feats), -1)) + 3.0 * torch.eye(5 * 17)
    scale = model.posterior_scale.double()
    assert torch.allclose(scale @ scale.T, torch.linalg.inv(precision), atol=1e-6)
    assert float(model.prior_precision) == 3.0


@torch.no_grad()
def test_samples_differ_and_huge_prior_precision_collapses_to_the_map() -> None:
    model, x = _fitted(prior_precisions=[1.0])
    out = model.sample_logits(x[:4])
    assert out.shape == (20, 4, 5) and not torch.allclose(out[0], out[1])
    stiff, _ = _fitted(prior_precisions=[1e8])
    map_logits = stiff.net(x[:4])
    assert torch.allclose(stiff.sample_logits(x[:4]).mean(0), map_logits, atol=1e-3)
    assert not torch.allclose(out.mean(0), map_logits, atol=1e-3)


def test_grid_search_picks_the_evidence_maximum_and_restores_the_mode() -> None:
    model, _ = _fitted(prior_precisions=[0.01, 1.0, 100.0])
    report = model.fit_report
    best = max(range(3), key=lambda i: report["log_evidence"][i])
    assert report["chosen"] == report["prior_precisions"][best] == float(model.prior_precision)
    net = SmallCNN(**TINY_ARCH).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_last_layer_laplace(net, (torch.randn(8, 1, 8, 8), torch.randint(0, 5, (8,))), [1.0])
    assert net.training  # fitting used eval mode but gave the caller's mode back


def test_unfitted_model_samples_the_map() -> None:
    model = build_laplace("small_cnn", TINY_ARCH, {"num_samples": 3}).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        out = model.sample_logits(x)
        assert torch.allclose(out, model.net(x).expand(3, -1, -1))


def test_bundle_round_trip(tmp_path: Path) -> None:
    model, x = _fitted(prior_precisions=[1.0], seed=7)
    params = model.method_params()
    loaded = round_trip(tmp_path, model, TINY_ARCH, params).model
    assert torch.equal(loaded.posterior_scale, model.posterior_scale)
    assert torch.equal(loaded.sample_logits(x[:3]), model.sample_logits(x[:3]))


def test_edge_of_grid_is_reported_loudly() -> None:
    torch.manual_seed(0)
    net = SmallCNN(**TINY_ARCH).eval()
    x, y = torch.randn(50, 1, 8, 8), torch.randint(0, 5, (50,))
    # A grid far below any sensible precision: the evidence peaks at its upper edge.
    with pytest.warns(UserWarning, match="edge of the grid"):
        fit_last_layer_laplace(net, (x, y), [1e-9, 1e-8])
