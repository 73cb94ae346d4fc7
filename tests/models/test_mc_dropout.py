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
    assert not torch.equal(out_a, a.sample_logits(x))  # the generator advances
    # Inference never reads module.training for dropout, and never changes the mode.
    c = _model(seed=3)
    assert not c.training and not c.net.training
    c.sample_logits(x)
    assert not c.net.training


def _explicit(model: MCDropout, x: torch.Tensor, seed: int, per_chunk: int) -> torch.Tensor:
    # Reference: masks drawn chunk by chunk (fc1 input, then fc2 input), applied to plain layers.
    gen = torch.Generator().manual_seed(seed)
    flat, out = model.net.forward_conv(x), []
    for start in range(0, model.num_samples, per_chunk):
        t = min(per_chunk, model.num_samples - start)
        m1 = (torch.rand((t, *flat.shape), generator=gen) >= model.p).float() / (1 - model.p)
        h = torch.relu(model.net.fc1(flat * m1))
        m2 = (torch.rand(h.shape, generator=gen) >= model.p).float() / (1 - model.p)
        out.append(model.net.fc2(h * m2))
    return torch.cat(out)


@torch.no_grad()
def test_samples_match_an_explicit_dropout_forward_with_and_without_chunks() -> None:
    x = torch.randn(5, 1, 8, 8)
    model = _model(num_samples=6, seed=5)
    assert torch.allclose(model.sample_logits(x), _explicit(model, x, 5, 6), atol=1e-6)
    model = _model(num_samples=6, seed=5)
    model.max_rows = 10  # two samples of 5 rows per chunk: three chunks
    assert torch.allclose(model.sample_logits(x), _explicit(model, x, 5, 2), atol=1e-6)


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
