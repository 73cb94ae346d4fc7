"""Helpers for the uncertainty-method tests (the model zoo): tiny architectures, bundle round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.base import UncertaintyModel
from models.bundle import Bundle, load_bundle, save_bundle
from models.scorers.base import Scorer
from models.scorers.msp import MaxSoftmax

#: A SmallCNN small enough for a shared 2-core CPU: 8x8 inputs, 5 classes.
TINY_ARCH: dict[str, Any] = {"num_classes": 5, "input_size": 8, "widths": [4, 8], "hidden": 16}


def manifest_fields(method: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields save_bundle needs (all but the weights' hash)."""
    k = arch_params.get("num_classes", 10)
    side = arch_params.get("input_size", 28)
    spec = {"name": "msp", "params": {}, "threshold": 0.5}
    return {
        "name": f"test-{method}",
        "version": "0.0.1",
        "method": method,
        "architecture": "small_cnn",
        "arch_params": arch_params,
        "method_params": method_params,
        "class_names": [str(i) for i in range(k)],
        "input": {"height": side, "width": side},
        "temperature": 1.0,
        "failure": spec,
        "ood": spec,
        "conformal": {"qhat": 0.9},
    }


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(n, generator=gen))
                m.bias.copy_(0.3 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.5 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


def round_trip(
    tmp_path: Path,
    model: UncertaintyModel,
    arch_params: dict[str, Any],
    method_params: dict[str, Any],
    failure: Scorer | None = None,
    failure_spec: dict[str, Any] | None = None,
) -> Bundle:
    """Save `model` as a bundle under `tmp_path` (msp scorers unless given) and load it back."""
    fields = manifest_fields(model.method, arch_params, method_params)
    if failure_spec is not None:
        fields["failure"] = failure_spec
    save_bundle(tmp_path / "bundle", fields, model, failure or MaxSoftmax(), MaxSoftmax())
    return load_bundle(tmp_path / "bundle")
