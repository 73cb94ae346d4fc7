"""The benchmark's naive baseline computes what the served packed ensemble computes.

Otherwise "service / naive" would compare two different computations. Checked for the
members as unpacked, and after both sides fold BatchNorm as the service does.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.naive import LoopedEnsemble, unpack
from models.ensemble import new_ensemble
from models.fusion import fold_batchnorm


def trained_looking_ensemble() -> nn.Module:
    torch.manual_seed(0)
    packed = new_ensemble(members=3)
    with torch.no_grad():
        packed.train()(torch.randn(64, 1, 28, 28))  # non-trivial BatchNorm running statistics
        for name in ("fc1_bias", "fc2_bias"):
            getattr(packed, name).normal_()
    return packed.eval().requires_grad_(False)


def test_looped_members_equal_the_packed_ensemble_with_and_without_folding() -> None:
    packed = trained_looking_ensemble()
    looped = LoopedEnsemble(unpack(packed))
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        ref = packed.sample_logits(x)
        torch.testing.assert_close(looped.sample_logits(x), ref, rtol=1e-4, atol=1e-4)
        for a, b in zip(looped.layer_features(x), packed.layer_features(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert fold_batchnorm(packed) == 3 and fold_batchnorm(looped) == 9  # 3 blocks x 3 members
        torch.testing.assert_close(looped.sample_logits(x), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(packed.sample_logits(x), ref, rtol=1e-4, atol=1e-4)
