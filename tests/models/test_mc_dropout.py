"""MC dropout: shapes, stochasticity, seeding, independence from train mode, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.architectures import SmallCNN
from models.deterministic import Deterministic
from models.mc_dropout import MCDropout, build_mc_dropout, mc_dropout
from tests.models.zoo_helpers import TINY_ARCH, randomise_batchnorm, round_trip

ARCH = {**TINY_ARCH, "dropout": 0.25}


def _model(num_samples: int = 7, seed: int | None = 0) -> MCDropout:
    torch.manual_seed(0)
    model = mc_dropout(SmallCNN(**ARCH), num_samples=num_samples, seed=seed)
    randomise_batchnorm(model)
    return model.eval()


def test_shapes_and_samples_differ_but_deterministic_does_not() -> None:
    model = _model()
    x = torch.randn(3, 1, 8, 8)
    feats = model.features(x)
    assert feats.shape == (1, 3, model.net.flat_dim)
    logits = model.head_samples(feats)
    assert logits.shape == (7, 3, 5)
    assert not torch.allclose(logits[0], logits[1])
    det = Deterministic(model.net).eval()
    assert det.sample_logits(x).shape == (1, 3, 5)
    assert torch.equal(det.sample_logits(x), det.sample_logits(x))


def test_sampling_is_seedable_and_ignores_train_mode() -> None:
    x = torch.randn(4, 1, 8, 8)
    a, b = _model(seed=3), _model(seed=3)
    out_a = a.sample_logits(x)
    assert torch.equal(out_a, b.sample_logits(x))
    assert not torch.allclose(out_a, _model(seed=4).sample_logits(x))  # the seed picks the masks
    # Inference never reads module.training for dropout, and never changes the mode.
    c = _model(seed=3)
    assert not c.training and not c.net.training
    c.sample_logits(x)
    assert not c.net.training


@torch.no_grad()
def test_an_input_gets_the_same_answer_alone_in_any_batch_and_at_every_call() -> None:
    # Common random numbers: the masks come from the bundle's seed at every call and are
    # shared by the batch, so neither the neighbours, the chunking nor earlier calls matter.
    x = torch.randn(6, 1, 8, 8)
    model = _model(num_samples=9, seed=2)
    batch = model.sample_logits(x)
    assert torch.allclose(model.sample_logits(x[3:4]), batch[:, 3:4], atol=1e-6)
    assert torch.allclose(model.sample_logits(x.flip(0))[:, 2], batch[:, 3], atol=1e-6)
    model.max_rows = 12  # two samples of 6 rows per chunk
    assert torch.allclose(model.sample_logits(x), batch, atol=1e-6)
    assert torch.equal(model.sample_logits(x), model.sample_logits(x))


@torch.no_grad()
def test_masks_are_independent_dropout_draws_per_sample() -> None:
    model = _model(num_samples=2000, seed=1)
    mask_in, mask_hidden = model.masks(torch.zeros(1))
    assert mask_in.shape == (2000, 1, model.net.flat_dim) and mask_hidden.shape == (2000, 1, model.net.hidden_dim)
    for mask in (mask_in, mask_hidden):
        assert set(mask.unique().tolist()) == {0.0, torch.tensor(1 / (1 - model.p)).item()}
        assert abs(float((mask == 0).float().mean()) - model.p) < 0.01
    # Samples are not copies of each other: two samples share a unit's mask only by chance.
    same = (mask_in[:-1] == mask_in[1:]).float().mean()
    assert abs(float(same) - (model.p**2 + (1 - model.p) ** 2)) < 0.02


def _explicit(model: MCDropout, x: torch.Tensor) -> torch.Tensor:
    # Reference: the model's masks applied sample by sample to the plain layers.
    mask_in, mask_hidden = model.masks(x)
    flat, out = model.net.forward_conv(x), []
    for t in range(model.num_samples):
        h = torch.relu(model.net.fc1(flat * mask_in[t]))
        out.append(model.net.fc2(h * mask_hidden[t]))
    return torch.stack(out)


@torch.no_grad()
def test_samples_match_an_explicit_dropout_forward_with_and_without_chunks() -> None:
    x = torch.randn(5, 1, 8, 8)
    model = _model(num_samples=6, seed=5)
    assert torch.allclose(model.sample_logits(x), _explicit(model, x), atol=1e-6)
    model.max_rows = 10  # two samples of 5 rows per chunk: three chunks
    assert torch.allclose(model.sample_logits(x), _explicit(model, x), atol=1e-6)


@torch.no_grad()
def test_inverted_dropout_keeps_the_mean_of_a_linear_head() -> None:
    # With fc1's bias large enough that ReLU never cuts, the head is linear in the masks,
    # so the MC mean must approach the dropout-free output; without the 1/(1-p)
    # scaling it would be ~0.75^2 of it.
    model = _model(num_samples=4000, seed=0)
    model.net.fc1.bias += 10.0
    feats = model.features(torch.randn(2, 1, 8, 8))
    reference = model.net.fc2(torch.relu(model.net.fc1(feats[0])))
    error = (model.head_samples(feats).mean(0) - reference).abs().max() / reference.abs().max()
    assert float(error) < 0.05


def test_refuses_a_rate_the_net_was_not_trained_with() -> None:
    with pytest.raises(ValueError):
        mc_dropout(SmallCNN(**TINY_ARCH), num_samples=4)  # no dropout at all
    with pytest.raises(ValueError):
        mc_dropout(SmallCNN(**ARCH), p=0.5)


def test_bundle_round_trip(tmp_path: Path) -> None:
    model = _model(seed=11)
    params = model.method_params()
    assert build_mc_dropout("small_cnn", ARCH, params).method_params() == params
    loaded = round_trip(tmp_path, model, ARCH, params).model
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded.sample_logits(x), model.sample_logits(x))  # both generators fresh from seed 11


def test_any_integer_seed_is_usable() -> None:
    # A manifest may hold any integer; torch refuses seeds outside [0, 2**64) in some forms.
    x = torch.randn(2, 1, 8, 8)
    for seed in (-3, 2**70):
        out = _model(seed=seed).sample_logits(x)
        assert torch.isfinite(out).all()
    assert not torch.equal(_model(seed=-3).sample_logits(x), _model(seed=3).sample_logits(x))
