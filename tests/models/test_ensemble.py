"""Packed deep ensemble: exactly equal to the loop over members, trainable, round trip."""

from __future__ import annotations

from pathlib import Path

import torch

from models.architectures import SmallCNN
from models.ensemble import (
    PackedEnsemble,
    build_ensemble,
    ensemble_loss,
    new_ensemble,
    pack_ensemble,
)
from tests.models.zoo_helpers import TINY_ARCH, randomise_batchnorm, round_trip


def _members(m: int = 3) -> list[SmallCNN]:
    members = []
    for i in range(m):
        torch.manual_seed(i)
        net = SmallCNN(**TINY_ARCH)
        randomise_batchnorm(net, seed=i)  # different running stats per member
        members.append(net.eval())
    return members


@torch.no_grad()
def test_packed_equals_the_loop_over_members() -> None:
    members = _members()
    packed = pack_ensemble(members).eval()
    x = torch.randn(4, 1, 8, 8)
    feats = packed.features(x)
    logits = packed.head_samples(feats)
    assert feats.shape == (3, 4, 16) and logits.shape == (3, 4, 5)
    expected_feats = torch.stack([m.forward_features(x) for m in members])
    expected = torch.stack([m(x) for m in members])
    assert torch.allclose(feats, expected_feats, atol=1e-5)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert not torch.allclose(logits[0], logits[1])  # members differ


@torch.no_grad()
def test_packed_equals_the_loop_at_full_size() -> None:
    # The default architecture (28x28, three blocks): the flat-feature ordering must still match.
    members = [SmallCNN() for _ in range(2)]
    for i, m in enumerate(members):
        randomise_batchnorm(m, seed=10 + i)
        m.eval()
    x = torch.randn(2, 1, 28, 28)
    expected = torch.stack([m(x) for m in members])
    assert torch.allclose(pack_ensemble(members).eval().sample_logits(x), expected, atol=1e-5)


def test_training_the_packed_net_matches_training_members_alone() -> None:
    # Train mode (batch-statistics BatchNorm) + one SGD step: packed == members stepped separately.
    members = _members(2)
    packed = pack_ensemble(members)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 5, (6,))
    packed.train()
    opt = torch.optim.SGD(packed.parameters(), lr=0.1)
    ensemble_loss(packed.sample_logits(x), y).backward()
    opt.step()
    for m in members:
        m.train()
        m_opt = torch.optim.SGD(m.parameters(), lr=0.1)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        m_opt.step()
        m.eval()
    packed.eval()
    with torch.no_grad():
        expected = torch.stack([m(x) for m in members])
        assert torch.allclose(packed.sample_logits(x), expected, atol=1e-5)


def test_new_ensemble_members_are_initialised_independently() -> None:
    torch.manual_seed(0)
    packed = new_ensemble(3, **TINY_ARCH).eval()
    assert isinstance(packed, PackedEnsemble) and packed.members == 3
    w = packed.fc1_weight.detach()
    assert not torch.allclose(w[0], w[1])
    # SmallCNN's nn.Linear init: uniform in +-1/sqrt(fan_in).
    assert float(w.abs().max()) <= 1 / packed.flat_dim**0.5 + 1e-6


def test_bundle_round_trip(tmp_path: Path) -> None:
    packed = pack_ensemble(_members()).eval()
    params = packed.method_params()
    assert params == {"members": 3}
    assert isinstance(build_ensemble("small_cnn", TINY_ARCH, params), PackedEnsemble)
    loaded = round_trip(tmp_path, packed, TINY_ARCH, params).model
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded.sample_logits(x), packed.sample_logits(x))
