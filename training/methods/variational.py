"""Bayes by Backprop (Blundell et al. 2015): a variational CNN trained on the ELBO.

One posterior sample per training example (local reparameterisation), KL scaled by
the training-set size; K samples at inference in one batched forward. With
`--base-bundle DET` the posterior means start at that deterministic network's weights
(MOPED, Krishnan et al. 2020) and a few ELBO epochs suffice: `make results` gives it 4,
where a random start needed 20 to pass 99.2 % test accuracy (the Makefile has the figures).

Two small departures from a pure ELBO, both shared with every other method so that the
zoo compares methods and not recipes: the `arch_params` dropout regularises training
(never inference, `models/variational_cnn.py`), and AdamW's decoupled weight decay also
acts on the posterior means and rho: it pulls each toward 0 by 0.03 % of its value per
epoch (1 - exp(-wd * the sum of one epoch's one-cycle learning rates), 0.6 % over 20
epochs); for rho, which is negative, that widens sigma a little.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from models.variational import kl_divergence
from models.variational_cnn import (
    VariationalCNN,
    elbo_loss,
    init_from_network,
    variational_cnn,
)
from training.base_net import load_base_net
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig, train
from training.methods.common import bundle_spec
from training.methods.deterministic import record_base
from training.options import MethodOptions

#: Blundell et al.'s scale-mixture prior (pi = 0.5, -log sigma1 = 0, -log sigma2 = 6).
PRIOR = {"kind": "scale_mixture", "pi": 0.5, "sigma1": 1.0, "sigma2": 0.0025}


def train_variational(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[VariationalCNN, BundleSpec]:
    start = time.perf_counter()
    model = variational_cnn(prior=PRIOR, **opts.samples(), seed=cfg.seed, **opts.arch_params)
    base = load_base_net(Path(opts.base_bundle), splits, opts.arch_params) if opts.base_bundle else None
    if base is not None:  # MOPED: the posterior means start at the deterministic network's weights
        init_from_network(model, base.net)
    n = len(splits.train)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return elbo_loss(model.sample_logits(x, num_samples=1), y, kl_divergence(model), n)

    train(model, list(model.parameters()), loss, splits.train, cfg, "variational")
    return model, record_base(bundle_spec(model, "variational", model.method_params(), splits, cfg, opts, start), base)
