"""Last-layer Laplace (MacKay 1992; Daxberger et al. 2021): a Gaussian posterior over fc2.

Train the SmallCNN as usual, then fit the full GGN of the last layer on the training
set; the prior precision maximises the log marginal likelihood over a grid.
"""

from __future__ import annotations

import time

from models.laplace import LastLayerLaplace, fit_last_layer_laplace
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig, normalise
from training.methods.common import bundle_spec
from training.methods.deterministic import base_or_train, record_base
from training.options import MethodOptions


def train_laplace(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[LastLayerLaplace, BundleSpec]:
    start = time.perf_counter()
    net, base = base_or_train(splits, cfg, opts, "laplace (MAP)")
    model = fit_last_layer_laplace(net, (normalise(splits.train.x), splits.train.y), **opts.samples(), seed=cfg.seed)
    spec = bundle_spec(model, "laplace", model.method_params(), splits, cfg, opts, start)
    spec.extra_metrics["laplace_prior_precision"] = model.fit_report["chosen"]
    return model, record_base(spec, base)
