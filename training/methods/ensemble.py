"""Deep ensemble (Lakshminarayanan et al. 2017): M members from independent initialisations.

The members are trained packed into one grouped-convolution network: the summed loss
gives each member exactly the gradient it would get alone (see `ensemble_loss`), and
one grouped forward is cheaper on the CPU than M separate ones. Members share the
minibatch order; their diversity comes from the independent initialisations, which
Lakshminarayanan et al. found to be the main source.
"""

from __future__ import annotations

import time

import torch

from models.ensemble import PackedEnsemble, ensemble_loss, new_ensemble
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig, train
from training.methods.common import bundle_spec
from training.options import MethodOptions


def train_ensemble(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[PackedEnsemble, BundleSpec]:
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = new_ensemble(members=opts.members, **opts.arch_params)
    train(model, list(model.parameters()), lambda x, y: ensemble_loss(model.sample_logits(x), y), splits.train, cfg, f"ensemble x{opts.members}")
    return model, bundle_spec(model, "ensemble", model.method_params(), splits, cfg, opts, start)
