"""Bayes by Backprop: KL against torch.distributions, LRT moments, sampling, ELBO, round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from models.architectures import SmallCNN
from models.variational import (
    Conv2dVariational,
    GaussianPrior,
    LinearVariational,
    ScaleMixturePrior,
    build_prior,
    kl_divergence,
)
from models.variational_cnn import (
    MAX_ROWS,
    VariationalCNN,
    build_variational,
    elbo_loss,
    init_from_network,
    variational_cnn,
)
from tests.models.zoo_helpers import TINY_ARCH, randomise_batchnorm, round_trip


def _spread(layer: LinearVariational | Conv2dVariational, seed: int = 0) -> None:
    # Posteriors far from the init so the KL and the noise are not trivially small.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen) * (0.5 if "mu" in name else 1.0) - (1.0 if "rho" in name else 0)
            )


@torch.no_grad()
def test_gaussian_prior_kl_is_the_closed_form() -> None:
    layer = LinearVariational(6, 4, prior=GaussianPrior(sigma=0.7))
    _spread(layer)
    prior = Normal(0.0, 0.7)
    expected = sum(
        torch_kl(Normal(mu, torch.nn.functional.softplus(rho)), prior).sum()
        for mu, rho in ((layer.weight_mu, layer.weight_rho), (layer.bias_mu, layer.bias_rho))
    )
    assert torch.allclose(layer.kl(), expected, rtol=1e-5)
    model = torch.nn.Sequential(layer, torch.nn.ReLU(), LinearVariational(4, 2, prior=GaussianPrior(0.7)))
    assert torch.allclose(kl_divergence(model), layer.kl() + model[2].kl())


@torch.no_grad()
def test_scale_mixture_log_prob_and_monte_carlo_kl() -> None:
    prior = ScaleMixturePrior(pi=0.3, sigma1=1.0, sigma2=0.05)
    w = torch.linspace(-3, 3, 13)
    mixture = torch.log(0.3 * Normal(0.0, 1.0).log_prob(w).exp() + 0.7 * Normal(0.0, 0.05).log_prob(w).exp())
    assert torch.allclose(prior.log_prob(w), mixture, atol=1e-5)
    # pi = 1 is the Gaussian N(0, sigma1^2): the MC estimate must average to the closed form.
    layer = LinearVariational(5, 3, prior=ScaleMixturePrior(pi=1.0, sigma1=0.8))
    _spread(layer)
    layer.generator = torch.Generator().manual_seed(0)
    estimates = torch.stack([layer.kl() for _ in range(2000)])
    exact = LinearVariational(5, 3, prior=GaussianPrior(0.8))
    exact.load_state_dict(layer.state_dict())
    assert abs(float(estimates.mean() - exact.kl())) < 4 * float(estimates.std()) / math.sqrt(2000)
    assert float(estimates.std()) > 0  # a Monte Carlo estimate, not a constant


def _weight_sampled_moments(
    layer: LinearVariational | Conv2dVariational, x: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    # Independent check of the LRT: n whole weight tensors from q, applied with the plain op
    # (stacked along the output channels so it is one call), no local reparameterisation.
    gen = torch.Generator().manual_seed(1)
    softplus = torch.nn.functional.softplus
    w = layer.weight_mu + softplus(layer.weight_rho) * torch.randn((n, *layer.weight_mu.shape), generator=gen)
    b = layer.bias_mu + softplus(layer.bias_rho) * torch.randn((n, *layer.bias_mu.shape), generator=gen)
    if isinstance(layer, LinearVariational):
        out = torch.einsum("bi,noi->nbo", x, w) + b.unsqueeze(1)
    else:
        out = torch.nn.functional.conv2d(x, w.flatten(0, 1), b.flatten(), layer.stride, layer.padding)
        out = out.view(x.shape[0], n, -1, *out.shape[2:]).transpose(0, 1)
    return out.mean(0), out.var(0)


@pytest.mark.parametrize(
    "layer, x",
    [
        (LinearVariational(4, 3), torch.randn(2, 4)),
        (Conv2dVariational(2, 3, 3, padding=1, bias=True), torch.randn(1, 2, 4, 4)),
    ],
    ids=["linear", "conv"],
)
@torch.no_grad()
def test_local_reparameterisation_matches_weight_sampling(
    layer: LinearVariational | Conv2dVariational, x: torch.Tensor
) -> None:
    _spread(layer, seed=3)
    n = 4000
    layer.generator = torch.Generator().manual_seed(2)
    # Each row of the repeated batch gets its own noise: n draws in one call.
    lrt = layer(x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:]))
    lrt = lrt.view(n, x.shape[0], *lrt.shape[1:])
    w_mean, w_var = _weight_sampled_moments(layer, x, n)
    scale = w_var.sqrt()
    # Means agree within ~4 standard errors of the difference; variances within 12%.
    assert ((lrt.mean(0) - w_mean).abs() <= 4 * scale * math.sqrt(2 / n) + 1e-6).all()
    assert ((lrt.var(0) / w_var - 1).abs() < 0.12).all()


def _model(num_samples: int = 6, seed: int | None = 0, prior: dict | None = None) -> VariationalCNN:
    torch.manual_seed(0)
    model = variational_cnn(prior=prior, num_samples=num_samples, seed=seed, **TINY_ARCH)
    randomise_batchnorm(model)
    return model.eval()


@torch.no_grad()
def test_samples_have_the_right_shape_differ_and_are_seedable() -> None:
    x = torch.randn(3, 1, 8, 8)
    a, b = _model(seed=4), _model(seed=4)
    feats = a.features(x)
    assert feats.shape == (6, 3, 16)
    out = a.head_samples(feats)
    assert out.shape == (6, 3, 5) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
    assert torch.equal(b.sample_logits(x), _model(seed=4).sample_logits(x))
    assert a.sample_logits(x, num_samples=1).shape == (1, 3, 5)


@torch.no_grad()
def test_posterior_means_start_at_a_trained_network() -> None:
    torch.manual_seed(3)
    net = SmallCNN(**TINY_ARCH).eval()
    randomise_batchnorm(net, seed=5)
    model = init_from_network(_model(num_samples=3), net)
    x = torch.randn(7, 1, 8, 8)
    assert not torch.allclose(model.sample_logits(x).mean(0), net(x), atol=1e-2)  # sigma's noise is still there
    for layer in (*(block[0] for block in model.conv), model.fc1, model.fc2):
        layer.weight_rho.fill_(-30.0)  # sigma ~ 1e-13: every sample is the mean network
        if layer.bias_rho is not None:
            layer.bias_rho.fill_(-30.0)
    # Every conv, BatchNorm (affine and running statistics) and linear layer was copied.
    assert torch.allclose(model.sample_logits(x), net(x).expand(3, -1, -1), atol=1e-5)
    with pytest.raises(RuntimeError):  # another shape of network cannot be copied in
        init_from_network(_model(), SmallCNN(**{**TINY_ARCH, "hidden": 12}))


def test_elbo_loss_scales_kl_by_the_data_set_size() -> None:
    logits = torch.randn(4, 8, 5)
    labels = torch.randint(0, 5, (8,))
    kl = torch.tensor(300.0)
    nll = torch.stack([torch.nn.functional.cross_entropy(s, labels) for s in logits]).mean()
    assert torch.allclose(elbo_loss(logits, labels, kl, 60000), nll + 300.0 / 60000)
    assert torch.allclose(
        elbo_loss(logits[0], labels, kl, 100), torch.nn.functional.cross_entropy(logits[0], labels) + 3.0
    )


def test_one_training_step_reduces_the_loss_and_trains_sigma() -> None:
    model = _model(num_samples=1, seed=0).train()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 5, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = elbo_loss(model.sample_logits(x), y, kl_divergence(model), dataset_size=16)
        loss.backward()
        assert model.fc2.weight_rho.grad is not None and model.fc2.weight_rho.grad.abs().sum() > 0
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_prior_json_and_bundle_round_trip(tmp_path: Path) -> None:
    prior = {"kind": "scale_mixture", "pi": 0.25, "sigma1": 1.0, "sigma2": 0.01}
    model = _model(seed=9, prior=prior)
    params = model.method_params()
    assert params["prior"] == prior and isinstance(build_prior(params["prior"]), ScaleMixturePrior)
    assert build_variational("small_cnn", TINY_ARCH, params).method_params() == params
    loaded = round_trip(tmp_path, model, TINY_ARCH, params).model
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(loaded.sample_logits(x), model.sample_logits(x))
    with pytest.raises(TypeError):
        build_prior({"kind": "laplace"})


@torch.no_grad()
def test_a_large_batch_goes_by_groups_of_images_in_order() -> None:
    # Inference draws the K networks once per call and shares them by the batch, so the
    # grouped forward of a batch larger than MAX_ROWS // K must equal each image's own
    # forward, in order (grouping along the sample axis, out of order, or drawing new
    # weights per group would not), with the posterior's full noise on.
    model = _model(num_samples=4, seed=0)
    for layer in model._layers():
        _spread(layer, seed=7)
    b = MAX_ROWS // 4 * 2 + 3  # three groups, the last one short
    x = torch.randn(b, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    rows: list[int] = []
    hook = model.conv[0][1].register_forward_hook(lambda _m, inp, _out: rows.append(inp[0].shape[0]))
    out = model.sample_logits(x)
    hook.remove()
    assert rows == [MAX_ROWS, MAX_ROWS, 4 * 3]  # K = 4 samples of each image of a group, together
    assert out.shape == (4, b, TINY_ARCH["num_classes"])
    single = torch.cat([model.sample_logits(x[i : i + 1]) for i in range(b)], dim=1)
    torch.testing.assert_close(out, single, rtol=1e-3, atol=1e-4)  # float32 sums in another order
    assert not torch.allclose(out[:, :1], out[:, -1:])  # the images differ, so order matters
    assert not torch.allclose(out[0], out[1], atol=1e-3)  # and the samples differ


@pytest.mark.parametrize("kind", ["linear", "conv"])
@torch.no_grad()
def test_drawn_weights_are_posterior_draws_applied_as_plain_layers(kind: str) -> None:
    layer = LinearVariational(4, 3) if kind == "linear" else Conv2dVariational(2, 3, 3, padding=1, bias=True)
    _spread(layer, seed=4)
    weight, bias = layer.draw(4000, torch.Generator().manual_seed(0))
    assert bias is not None and weight.shape == (4000, *layer.weight_mu.shape)
    sigma = torch.nn.functional.softplus(layer.weight_rho)
    assert ((weight.mean(0) - layer.weight_mu).abs() < 4 * sigma / math.sqrt(4000)).all()
    assert ((weight.std(0) / sigma - 1).abs() < 0.1).all()
    k = 3
    shared = torch.randn(2, 4) if kind == "linear" else torch.randn(2, 2, 5, 5)
    per_row = torch.randn(k, *shared.shape)
    if kind == "linear":
        out_shared = layer.forward_drawn(shared.expand(k, -1, -1), weight[:k], bias[:k])
        plain = [torch.nn.functional.linear(row, weight[i], bias[i]) for i, row in enumerate(per_row)]
        expected_shared = [torch.nn.functional.linear(shared, weight[i], bias[i]) for i in range(k)]
    else:
        out_shared = layer.forward_drawn(shared, weight[:k], bias[:k])
        conv = torch.nn.functional.conv2d
        plain = [conv(row, weight[i], bias[i], padding=1) for i, row in enumerate(per_row)]
        expected_shared = [conv(shared, weight[i], bias[i], padding=1) for i in range(k)]
    torch.testing.assert_close(out_shared, torch.stack(expected_shared), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.forward_drawn(per_row, weight[:k], bias[:k]), torch.stack(plain), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_each_layer_draws_from_its_own_stream() -> None:
    # Two layers drawing from one restarted stream would start with the same noise values.
    model = _model(num_samples=5, seed=3)
    draws = model.draw_weights(5)
    noise = [(w - layer.weight_mu) / torch.nn.functional.softplus(layer.weight_rho) for layer, (w, _) in zip(model._layers(), draws, strict=True)]
    firsts = [n.flatten()[:8] for n in noise]  # the first values each layer's stream gave
    for i in range(len(firsts)):
        for j in range(i + 1, len(firsts)):
            assert not torch.allclose(firsts[i], firsts[j], atol=1e-4), (i, j)


def test_draws_are_kept_until_a_parameter_changes() -> None:
    model = _model(num_samples=4, seed=2)
    x = torch.randn(2, 1, 8, 8)
    with torch.inference_mode():
        first = model.draw_weights(4)
        out = model.sample_logits(x)
        assert model.draw_weights(4) is first  # not drawn again at the next call
    assert model.draw_weights(3) is not first and len(model.draw_weights(3)[0][0]) == 3
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.fc2.weight_mu.add_(1.0)  # as an optimiser step would
    with torch.inference_mode():
        assert not torch.allclose(model.sample_logits(x), out)
    model.load_state_dict(state)
    with torch.inference_mode():
        torch.testing.assert_close(model.sample_logits(x), out)  # drawn again from the loaded weights
    # Drawn in inference mode, the kept draws still let ODIN differentiate through the input.
    xg = x.clone().requires_grad_(True)
    model.sample_logits(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_training_batches_are_never_split() -> None:
    # BatchNorm's training statistics are the batch's: a grouped forward would change them.
    model = variational_cnn(num_samples=4, seed=0, **TINY_ARCH)
    model.train()
    rows: list[int] = []
    model.conv.register_forward_hook(lambda _m, inp, _out: rows.append(inp[0].shape[0]))
    model.sample_logits(torch.randn(MAX_ROWS, 1, 8, 8), num_samples=2)
    assert rows == [2 * MAX_ROWS]
