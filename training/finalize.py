"""Turn a trained model into a served bundle: calibrate, fit thresholds, measure, save.

All fitting uses held-out in-distribution data only: temperature and thresholds on
`val`, the conformal quantile on the disjoint `cal`. Scores are computed through the
same `Pipeline` the service uses, so what was fitted is exactly what is served.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.base import UncertaintyModel
from models.bundle import Bundle, save_bundle
from models.conformal import aps_scores, conformal_quantile
from models.manifest import ConformalSpec, Manifest, ScorerSpec
from models.pipeline import Pipeline, PipelineOutput
from models.scorers.base import Scorer
from models.thresholds import (
    guaranteed_risk_threshold,
    pass_rate_threshold,
    selective_risk_threshold,
)
from models.uncertainty import uncertainty
from training import metrics
from training.data import Split, Splits
from training.loop import normalise, predict_logits
from training.scorer_fit import fit_rows

MNIST_CLASSES = [str(i) for i in range(10)]
REFERENCE_SIZE = 2000


@dataclass
class BundleSpec:
    """What the method-specific trainer hands over besides the model."""

    name: str
    version: str
    method: str
    architecture: str
    arch_params: dict[str, Any]
    method_params: dict[str, Any]
    failure_scorer: Scorer
    ood_scorer: Scorer
    #: The temperature served, fitted on validation (`training.loop.served_temperature`) once,
    #: before the scorers were chosen at it.
    temperature: float
    target_risk: float = 0.005
    #: With a value (e.g. 0.9), the failure threshold bounds the risk with that probability
    #: (SGR, `models.thresholds.guaranteed_risk_threshold`); None: it meets it on validation.
    risk_confidence: float | None = None
    ood_pass_rate: float = 0.99
    alpha: float = 0.01
    training_seconds: float = 0.0
    extra_metrics: dict[str, Any] = field(default_factory=dict)


def run_pipeline(pipeline: Pipeline, data: Split, batch_size: int = 500) -> PipelineOutput:
    """The served computation over a whole split, concatenated."""
    outs = [pipeline.run(data.x[i : i + batch_size]) for i in range(0, len(data), batch_size)]
    return PipelineOutput.concat(outs)


def _failure_criterion(spec: BundleSpec) -> str:
    if spec.risk_confidence is None:
        return f"largest threshold with at most {100 * spec.target_risk:g}% errors among accepted validation predictions"
    return (f"largest threshold found whose error rate among accepted predictions is at most {100 * spec.target_risk:g}% "
            f"with {100 * spec.risk_confidence:g}% confidence (selection with guaranteed risk, Geifman & El-Yaniv 2017, on validation)")  # fmt: skip


def _manifest_fields(spec: BundleSpec, failure_t: float, ood_t: float, qhat: float, fp: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "version": spec.version,
        "method": spec.method,
        "architecture": spec.architecture,
        "arch_params": spec.arch_params,
        "method_params": spec.method_params,
        "class_names": MNIST_CLASSES,
        "temperature": spec.temperature,
        "failure": ScorerSpec(
            name=spec.failure_scorer.name,
            params=spec.failure_scorer.params(),
            threshold=failure_t,
            criterion=_failure_criterion(spec),
            target=spec.target_risk,
            confidence=spec.risk_confidence,
        ),
        "ood": ScorerSpec(
            name=spec.ood_scorer.name,
            params=spec.ood_scorer.params(),
            threshold=ood_t,
            criterion=f"{100 * spec.ood_pass_rate:g}% of in-distribution validation inputs pass (those the scorer was not fitted on)",
            target=spec.ood_pass_rate,
        ),
        "conformal": ConformalSpec(alpha=spec.alpha, qhat=qhat),
        "data_fingerprint": fp,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "training_seconds": round(spec.training_seconds, 1),
        "weights_sha256": "0" * 64,
    }


def _pipeline(model: UncertaintyModel, spec: BundleSpec, fields: dict[str, Any]) -> Pipeline:
    return Pipeline(Bundle(Manifest(**fields), model, spec.failure_scorer, spec.ood_scorer))


def finalize(model: UncertaintyModel, spec: BundleSpec, splits: Splits, out: Path, test: Split | None = None) -> Manifest:
    """Calibrate and threshold `model` on held-out data, measure it, and write the bundle."""
    model.eval()
    for m in (model, spec.failure_scorer, spec.ood_scorer):
        m.requires_grad_(False)
    fields = _manifest_fields(spec, 0.0, 0.0, 1.0, splits.fingerprint)
    val_out = run_pipeline(_pipeline(model, spec, fields), splits.val)
    correct = val_out.probs.argmax(-1) == splits.val.y
    bound: dict[str, float] = {}
    if spec.risk_confidence is None:
        failure_t, risk, coverage = selective_risk_threshold(val_out.failure_score, correct, spec.target_risk)
    else:
        failure_t, risk, coverage, bound["risk_bound"] = guaranteed_risk_threshold(val_out.failure_score, correct, spec.target_risk, spec.risk_confidence)
    # The OOD threshold on validation inputs the scorer was not fitted on (its layer
    # standardisation and ODIN's eps used val[:n]), so the pass rate is an honest estimate.
    fitted = fit_rows(len(splits.val))
    ood_val = val_out.ood_score[fitted:]
    ood_t = pass_rate_threshold(ood_val, spec.ood_pass_rate)
    cal_out = run_pipeline(_pipeline(model, spec, fields), splits.cal)
    # Randomised APS scores at calibration (seeded); the served sets add the boundary
    # class deterministically, which can only raise coverage above 1 - alpha.
    u = torch.rand(len(splits.cal), generator=torch.Generator().manual_seed(0))
    qhat = conformal_quantile(aps_scores(cal_out.probs, splits.cal.y, u), spec.alpha)
    fields = _manifest_fields(spec, failure_t, ood_t, qhat, splits.fingerprint)
    fields["metrics"] = {
        "validation": {
            "selective_risk": risk if coverage > 0 else None,  # no accepted prediction: no error rate
            **bound,
            "coverage": coverage,
            "ood_pass_rate": float((ood_val <= ood_t).float().mean()),
            **metrics.classification(val_out.probs, splits.val.y),
        },
        **spec.extra_metrics,
    }
    if test is not None:
        fields["metrics"]["test"] = test_metrics(model, spec.temperature, test)
    # The drift reference from the same held-out rows as the OOD threshold: on the rows the
    # scorer was fitted on (its layer standardisation is computed there) its scores are
    # tighter than live in-distribution traffic's, and the drift test would flag that gap.
    held = slice(fitted, fitted + REFERENCE_SIZE)
    fields["reference"] = {
        "confidence": [round(float(v), 6) for v in val_out.probs.max(-1).values[held]],
        "ood_score": [round(float(v), 6) for v in val_out.ood_score[held]],
    }
    return save_bundle(out, fields, model, spec.failure_scorer, spec.ood_scorer)


def test_metrics(model: UncertaintyModel, temperature: float, test: Split) -> dict[str, Any]:
    """Accuracy, NLL, Brier and ECE before and after temperature scaling, on `test`.

    One forward pass serves both: the served probabilities are `uncertainty`'s, the
    pipeline's own formula, at T. (Running the whole pipeline again cost a second
    forward over the test set, K posterior samples each for the variational network.)
    """
    logits = predict_logits(model.sample_logits, test)
    return {
        "n": len(test),
        "before_temperature": metrics.classification(uncertainty(logits, 1.0).probs, test.y),
        "after_temperature": metrics.classification(uncertainty(logits, temperature).probs, test.y),
    }


__all__ = ["BundleSpec", "finalize", "normalise", "run_pipeline"]


def warn_if_all_abstain(manifest: Manifest) -> None:
    """Say so when the fitted failure threshold accepted no validation prediction: served, such
    a bundle abstains on every input (a tiny training run, or a target risk no threshold meets)."""
    if manifest.metrics.get("validation", {}).get("coverage") == 0:
        target = "" if manifest.failure.target is None else f" (target risk {manifest.failure.target:g})"
        print(
            f"warning: the failure threshold accepts none of the validation predictions{target}: "
            "served, this bundle abstains on every input; train longer, or raise --target-risk",
            file=sys.stderr,
        )
