"""Reuse the trained network of a deterministic bundle (`vigil train --base-bundle`).

MC dropout and last-layer Laplace are both built on a SmallCNN trained with plain
cross-entropy and dropout, which is exactly the deterministic baseline. Building them
on the baseline's own network makes the comparison a like-for-like one (same weights,
different inference), and saves training the same network three times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.architectures import SmallCNN
from models.bundle import load_bundle
from models.deterministic import Deterministic
from models.usage import UsageError
from training.data import Splits


@dataclass
class BaseNet:
    net: SmallCNN
    #: Recorded in the new bundle: where the weights came from and what training them cost.
    record: dict[str, Any]
    training_seconds: float


def load_base_net(path: Path, splits: Splits, arch_params: dict[str, Any]) -> BaseNet:
    """The network of deterministic bundle `path`, checked to match these splits and architecture."""
    bundle = load_bundle(path)  # SHA-256-checked safetensors, never a pickle
    m = bundle.manifest
    if m.method != "deterministic" or not isinstance(bundle.model, Deterministic):
        raise UsageError(f"{path}: base bundle must be a deterministic one, not {m.method!r}")
    if m.data_fingerprint != splits.fingerprint:
        # Another seed or split size: its validation images were training images here.
        raise UsageError(f"{path}: trained on other data splits ({m.data_fingerprint[:12]} != {splits.fingerprint[:12]}); use the same --seed and sizes")
    if m.arch_params != arch_params:
        raise UsageError(f"{path}: architecture {m.arch_params} differs from {arch_params}")
    net = bundle.model.net
    net.requires_grad_(True)
    net.eval()
    record = {"path": str(path), "name": m.name, "version": m.version, "weights_sha256": m.weights_sha256, "training_seconds": m.training_seconds}
    return BaseNet(net, record, m.training_seconds)
