"""Deep ensemble (Lakshminarayanan et al. 2017): M members from independent initialisations.

Each member is an ordinary SmallCNN trained on its own seed (its own initialisation
and minibatch order, as in the paper); the trained members are then packed exactly
into one grouped-convolution network for serving. Training members one by one is
also the faster route on the CPU: grouped-convolution backward passes measured about
3x slower per member than the plain ones.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from models.ensemble import PackedEnsemble, pack_ensemble
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.common import bundle_spec
from training.methods.deterministic import train_net
from training.options import MethodOptions


def train_ensemble(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[PackedEnsemble, BundleSpec]:
    start = time.perf_counter()
    members = []
    for i in range(opts.members):
        member_cfg = dataclasses.replace(cfg, seed=cfg.seed * 1000 + i)
        torch.manual_seed(member_cfg.seed)
        members.append(train_net(splits, member_cfg, opts, f"ensemble member {i + 1}/{opts.members}"))
    model = pack_ensemble(members)
    model.eval()
    return model, bundle_spec(model, "ensemble", model.method_params(), splits, cfg, opts, start)
