"""The baseline: SmallCNN trained with cross-entropy; confidence is MCP."""

from __future__ import annotations

import time
from pathlib import Path

from torch.nn import functional as F

from models.architectures import SmallCNN
from models.deterministic import Deterministic
from training.base_net import BaseNet, load_base_net
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig, train
from training.methods.common import bundle_spec
from training.options import MethodOptions


def train_net(splits: Splits, cfg: TrainConfig, opts: MethodOptions, desc: str) -> SmallCNN:
    """One SmallCNN trained with cross-entropy (shared by deterministic, MC dropout, Laplace)."""
    net = SmallCNN(**opts.arch_params)
    train(net, list(net.parameters()), lambda x, y: F.cross_entropy(net(x), y), splits.train, cfg, desc)
    return net


def base_or_train(splits: Splits, cfg: TrainConfig, opts: MethodOptions, desc: str) -> tuple[SmallCNN, BaseNet | None]:
    """The `--base-bundle`'s network when one is given, else a freshly trained one."""
    if opts.base_bundle:
        base = load_base_net(Path(opts.base_bundle), splits, opts.arch_params)
        return base.net, base
    return train_net(splits, cfg, opts, desc), None


def record_base(spec: BundleSpec, base: BaseNet | None) -> BundleSpec:
    """Credit the reused network's training time and name its source in the manifest."""
    if base is not None:
        spec.training_seconds += base.training_seconds
        spec.extra_metrics["base_bundle"] = base.record
    return spec


def train_deterministic(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[Deterministic, BundleSpec]:
    start = time.perf_counter()
    model = Deterministic(train_net(splits, cfg, opts, "deterministic"))
    return model, bundle_spec(model, "deterministic", {}, splits, cfg, opts, start)
