"""Serving-time BatchNorm folding: exact outputs, every pair folded, training models untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from models.architectures import SmallCNN
from models.deterministic import Deterministic
from models.ensemble import new_ensemble
from models.fusion import fold_batchnorm
from models.variational_cnn import VariationalCNN


def with_running_stats(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, then eval mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("build", [lambda: Deterministic(SmallCNN()), lambda: new_ensemble(members=3)])
def test_folded_model_gives_the_same_logits_and_layer_features(build: object) -> None:
    torch.manual_seed(0)
    assert callable(build)
    model = with_running_stats(build())
    ref = copy.deepcopy(model)
    assert fold_batchnorm(model) == 3  # one per conv block
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.sample_logits(x), ref.sample_logits(x), rtol=1e-4, atol=1e-4)
        for a, b in zip(model.layer_features(x), ref.layer_features(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # The input gradient (what ODIN uses) is the same too.
    grads = []
    for net in (model, ref):
        xx = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net.sample_logits(xx).logsumexp(-1).sum(), xx)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_training_mode_and_variational_convs_are_left_alone() -> None:
    model = Deterministic(SmallCNN()).train()
    assert fold_batchnorm(model) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    vcnn = with_running_stats(VariationalCNN())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in vcnn.modules())
    assert fold_batchnorm(vcnn) == 0  # sampled weights cannot absorb a fixed affine map
    assert sum(isinstance(m, nn.BatchNorm2d) for m in vcnn.modules()) == n_bn > 0
