"""MC dropout (Gal & Ghahramani 2016): train with dropout, keep it on at inference (T samples)."""

from __future__ import annotations

import time

from models.mc_dropout import MCDropout, mc_dropout
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.common import bundle_spec
from training.methods.deterministic import train_net
from training.options import MethodOptions


def train_mc_dropout(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[MCDropout, BundleSpec]:
    start = time.perf_counter()
    model = mc_dropout(train_net(splits, cfg, opts, "mc_dropout"), num_samples=opts.num_samples, seed=cfg.seed)
    return model, bundle_spec(model, "mc_dropout", model.method_params(), splits, cfg, opts, start)
