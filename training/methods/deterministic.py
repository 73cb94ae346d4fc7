"""The baseline: SmallCNN trained with cross-entropy; confidence is MCP."""

from __future__ import annotations

import time

from torch.nn import functional as F

from models.architectures import SmallCNN
from models.deterministic import Deterministic
from models.scorers.registry import build_scorer
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig, train
from training.options import MethodOptions
from training.scorer_fit import fit_ood_scorer


def train_deterministic(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[Deterministic, BundleSpec]:
    start = time.perf_counter()
    net = SmallCNN(**opts.arch_params)
    model = Deterministic(net)
    train(model, list(model.parameters()), lambda x, y: F.cross_entropy(net(x), y), splits.train, cfg, "deterministic")
    ood, chosen = fit_ood_scorer(opts.ood_scorer, model, splits)
    spec = BundleSpec(
        name=opts.name,
        version=opts.version,
        method="deterministic",
        architecture="small_cnn",
        arch_params=opts.arch_params,
        method_params={},
        failure_scorer=build_scorer(opts.failure_scorer),
        ood_scorer=ood,
        target_risk=opts.target_risk,
        ood_pass_rate=opts.ood_pass_rate,
        alpha=opts.alpha,
        training_seconds=time.perf_counter() - start,
        extra_metrics={"ood_fit": chosen} if chosen else {},
    )
    return model, spec
