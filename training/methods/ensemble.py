"""Deep ensemble (Lakshminarayanan et al. 2017): M members from independent initialisations.

Each member is an ordinary SmallCNN trained on its own seed (its own initialisation
and minibatch order, as in the paper); the trained members are then packed exactly
into one grouped-convolution network for serving. Training members one by one is
also the faster route on the CPU: grouped-convolution backward passes measured about
3x slower per member than the plain ones.

With `--base-bundle DET` the deterministic network of the same seed is member 0 instead
of a fresh one: it is itself an ordinary SmallCNN trained from its own random
initialisation, so the ensemble stays a deep ensemble, one member's training cheaper
(1.0-1.3 of about 9 minutes per seed in `make results` of 2026-11-30, ConfidNet head
included; issue 3's 30-minute budget is for the whole zoo). Members 1..M-1 keep their
seeds, so they are the networks a run without a base trains; give the ensemble the
base's `--epochs` (`make results` does), or member 0 follows another schedule.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from models.architectures import SmallCNN
from models.ensemble import PackedEnsemble, pack_ensemble
from training.base_net import BaseNet
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.common import bundle_spec
from training.methods.deterministic import base_or_train, record_base, train_net
from training.options import MethodOptions


def train_ensemble(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[PackedEnsemble, BundleSpec]:
    start = time.perf_counter()
    members: list[SmallCNN] = []
    base: BaseNet | None = None
    for i in range(opts.members):
        # Member seeds s*1000 + i: distinct across the ensembles of seeds 0..999, but member i of
        # seed 0 is seed i, so a zoo of several seeds uses seeds that are not 1-4 (Makefile SEEDS).
        member_cfg = dataclasses.replace(cfg, seed=cfg.seed * 1000 + i)
        torch.manual_seed(member_cfg.seed)
        desc = f"ensemble member {i + 1}/{opts.members}"
        if i == 0:
            net, base = base_or_train(splits, member_cfg, opts, desc)
        else:
            net = train_net(splits, member_cfg, opts, desc)
        members.append(net)
    model = pack_ensemble(members)
    model.eval()
    return model, record_base(bundle_spec(model, "ensemble", model.method_params(), splits, cfg, opts, start), base)
