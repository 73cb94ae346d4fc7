"""What every trainer does after its own training: fit the scorers, describe the bundle."""

from __future__ import annotations

import time
from typing import Any

from models.base import UncertaintyModel
from models.scorers.base import Scorer
from training.confidnet_train import fit_confidnet
from training.data import Splits
from training.failure_select import choose_failure_scorer
from training.finalize import BundleSpec
from training.loop import TrainConfig, served_temperature
from training.options import MethodOptions
from training.scorer_fit import fit_named, fit_ood_scorer


def bundle_spec(
    model: UncertaintyModel,
    method: str,
    method_params: dict[str, Any],
    splits: Splits,
    cfg: TrainConfig,
    opts: MethodOptions,
    start: float,
) -> BundleSpec:
    """Fit the failure and OOD scorers on `model` (ID data only) and fill the bundle spec.

    `start` is the `time.perf_counter()` at the beginning of training, so the recorded
    training time includes fitting the scorers.
    """
    model.eval()
    extra: dict[str, Any] = {}
    by_name: dict[str, tuple[Scorer, dict[str, Any]]] = {}
    # The served temperature, fitted once: both auto choices score at it, and the bundle serves it.
    temperature = served_temperature(model, splits.val)
    if opts.failure_scorer in ("confidnet", "auto"):
        failure, reports = fit_confidnet(model, splits, cfg, opts.arch_params, opts.confidnet_passes, opts.confidnet_finetune_epochs)
        extra.update(reports)
        if opts.failure_scorer == "auto":  # the trained head competes with MCP & co. on held-out data
            failure, extra["failure_fit"] = choose_failure_scorer(model, {"confidnet": failure}, splits, temperature)
    else:
        failure, fitted = fit_named(opts.failure_scorer, model, splits)  # Mahalanobis and ODIN are fitted, the others built
        by_name[opts.failure_scorer] = (failure, fitted)
        if fitted:  # ODIN's chosen eps and the proxy AUROCs it was chosen by
            extra["failure_fit"] = fitted
    ood, chosen = fit_ood_scorer(opts.ood_scorer, model, splits, temperature, by_name)
    if chosen:
        extra["ood_fit"] = chosen
    return BundleSpec(
        name=opts.name,
        version=opts.version,
        method=method,
        architecture="small_cnn",
        arch_params=opts.arch_params,
        method_params=method_params,
        failure_scorer=failure,
        ood_scorer=ood,
        target_risk=opts.target_risk,
        risk_confidence=opts.risk_confidence,
        ood_pass_rate=opts.ood_pass_rate,
        alpha=opts.alpha,
        training_seconds=time.perf_counter() - start,
        extra_metrics=extra,
        temperature=temperature,
    )
