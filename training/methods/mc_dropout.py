"""MC dropout (Gal & Ghahramani 2016): train with dropout, keep it on at inference (T samples)."""

from __future__ import annotations

import time

from models.mc_dropout import MCDropout, mc_dropout
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.common import bundle_spec
from training.methods.deterministic import base_or_train, record_base
from training.options import MethodOptions


def train_mc_dropout(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[MCDropout, BundleSpec]:
    start = time.perf_counter()
    net, base = base_or_train(splits, cfg, opts, "mc_dropout")
    model = mc_dropout(net, **opts.samples(), seed=cfg.seed)
    return model, record_base(bundle_spec(model, "mc_dropout", model.method_params(), splits, cfg, opts, start), base)
