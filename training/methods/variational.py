"""Bayes by Backprop (Blundell et al. 2015): a variational CNN trained on the ELBO.

One posterior sample per training example (local reparameterisation), KL scaled by
the training-set size; K samples at inference in one batched forward.

Two small departures from a pure ELBO, both shared with every other method so that the
zoo compares methods and not recipes: the `arch_params` dropout regularises training
(never inference, `models/variational_cnn.py`), and AdamW's decoupled weight decay also
acts on the posterior means and rho: over the 20-epoch schedule it pulls each toward 0
by 0.6 % of its value in all (1 - exp(-wd * sum of the one-cycle learning rates)); for
rho, which is negative, that widens sigma a little.
"""

from __future__ import annotations

import time

import torch

from models.variational import kl_divergence
from models.variational_cnn import VariationalCNN, elbo_loss, variational_cnn
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig, train
from training.methods.common import bundle_spec
from training.options import MethodOptions

#: Blundell et al.'s scale-mixture prior (pi = 0.5, -log sigma1 = 0, -log sigma2 = 6).
PRIOR = {"kind": "scale_mixture", "pi": 0.5, "sigma1": 1.0, "sigma2": 0.0025}


def train_variational(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[VariationalCNN, BundleSpec]:
    start = time.perf_counter()
    model = variational_cnn(prior=PRIOR, num_samples=min(opts.num_samples, 10), seed=cfg.seed, **opts.arch_params)
    n = len(splits.train)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return elbo_loss(model.sample_logits(x, num_samples=1), y, kl_divergence(model), n)

    train(model, list(model.parameters()), loss, splits.train, cfg, "variational")
    return model, bundle_spec(model, "variational", model.method_params(), splits, cfg, opts, start)
