"""The baseline: SmallCNN trained with cross-entropy; confidence is MCP."""

from __future__ import annotations

import time

from torch.nn import functional as F

from models.architectures import SmallCNN
from models.deterministic import Deterministic
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


def train_deterministic(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[Deterministic, BundleSpec]:
    start = time.perf_counter()
    model = Deterministic(train_net(splits, cfg, opts, "deterministic"))
    return model, bundle_spec(model, "deterministic", {}, splits, cfg, opts, start)
