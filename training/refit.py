"""`vigil refit BUNDLE --out NEW`: re-fit scorers, calibration and thresholds without retraining.

Training the classifier is the expensive part (minutes per ensemble on 2 cores);
choosing another OOD scorer, risk target, pass rate or conformal alpha is not. The
splits are rebuilt from the seed and sizes recorded at training time, and their
fingerprint must match the bundle's, so nothing is fitted on data the model saw
differently.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

from models.bundle import load_bundle
from models.manifest import Manifest
from models.scorers.base import Scorer
from models.usage import UsageError
from training.confidnet_train import fit_confidnet
from training.data import load_mnist, make_splits
from training.failure_select import choose_failure_scorer
from training.finalize import BundleSpec, finalize, warn_if_all_abstain
from training.loop import TrainConfig, served_temperature
from training.options import (
    MethodOptions,
    check_confidnet_options,
    check_fitting_options,
    check_identity,
    check_scorer_names,
    check_spread_scorers,
    check_writable,
    nonnegative_int,
)
from training.scorer_fit import fit_named, fit_ood_scorer

#: The manifest reports `fit_confidnet` writes about the head it trains.
HEAD_REPORTS = ("confidnet_fit", "confidnet_finetune")


def confidence_or_off(text: str) -> float | str:
    """`--risk-confidence`'s value on refit: a probability, or "off" to drop a bundle's bound."""
    if text == "off":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a probability in (0, 1), or off") from None


T = TypeVar("T")


def first_given(*values: T | None, last: T) -> T:
    """The first value that is not None: an option given, else the bundle's own, else `last`."""
    return next((v for v in values if v is not None), last)


def own_rules(m: Manifest, args: argparse.Namespace) -> tuple[float, float, float, float | None]:
    """(target risk, OOD pass rate, alpha, risk confidence): the ones asked for, else the bundle's own. The
    options' defaults used to replace a bundle's own rules without a word, keeping its name
    and version (a bundle trained for 2 % risk came back fitted for 0.5 %). Bundles written
    before the targets were recorded fall back to `vigil train`'s defaults."""
    confidence = first_given(args.risk_confidence, m.failure.confidence, last=None)
    return (
        first_given(args.target_risk, m.failure.target, last=MethodOptions.target_risk),
        first_given(args.ood_pass_rate, m.ood.target, last=MethodOptions.ood_pass_rate),
        first_given(args.alpha, last=m.conformal.alpha),
        None if confidence == "off" else confidence,
    )


def run(args: argparse.Namespace) -> int:
    check_scorer_names(args.failure_scorer, args.ood_scorer)
    check_identity(args.name, args.version)
    check_writable(Path(args.out), source=Path(args.bundle))
    bundle = load_bundle(Path(args.bundle))
    m = bundle.manifest
    target_risk, ood_pass_rate, alpha, risk_confidence = own_rules(m, args)
    check_fitting_options(target_risk, ood_pass_rate, alpha, risk_confidence)
    check_spread_scorers(m.method, m.method_params.get("members"), m.method_params.get("num_samples"), (args.failure_scorer, args.ood_scorer))
    check_confidnet_options(m.method, args.failure_scorer, args.confidnet_passes, args.confidnet_finetune_epochs)
    if (args.name or m.name, args.version or m.version) == (m.name, m.version):
        # Not refused (a refit in place of a bundle never served is fine), but said before the
        # work, so the user can stop and pass --version: rows the original logged would fail
        # `vigil replay`'s audit against this bundle.
        print(f"warning: {args.out} keeps {m.name} v{m.version}, but its thresholds and scores may answer otherwise; "
              "pass --version to tell the two apart in the request log (vigil replay audits by name and version)", file=sys.stderr)  # fmt: skip
    recipe_asked = args.confidnet_passes is not None or args.confidnet_finetune_epochs > 0
    record = m.metrics.get("training")
    if record is None:
        raise UsageError(f"{args.bundle}: the manifest does not record its training seed and split sizes")
    data_dir = Path(args.data_dir)
    splits = make_splits(data_dir, val_size=record["val_size"], seed=record["seed"], train_size=record["train_size"])
    if splits.fingerprint != m.data_fingerprint:
        raise UsageError("the rebuilt splits do not match the bundle's data fingerprint (another MNIST copy under --data-dir?); refusing to refit")
    start = time.perf_counter()
    model = bundle.model
    extra = {k: v for k, v in m.metrics.items() if k not in ("validation", "test", "ood_fit")}
    failure = bundle.failure_scorer
    cfg = TrainConfig(seed=record["seed"])

    replaced = 0.0  # seconds a replaced head took to train: the new bundle does without them

    def drop_head() -> None:
        """Forget the head being replaced: its reports, and its seconds in the training time."""
        nonlocal replaced
        for report in HEAD_REPORTS:  # a new head not fine-tuned writes only the first again
            replaced += float(extra.pop(report, {}).get("seconds", 0.0))

    def new_head() -> Scorer:
        drop_head()
        head, reports = fit_confidnet(model, splits, cfg, m.arch_params, args.confidnet_passes or "shift", args.confidnet_finetune_epochs)
        extra.update(reports)
        return head

    # The served temperature, fitted once: both auto choices score at it, and the bundle serves it.
    temperature = served_temperature(model, splits.val)
    by_name: dict[str, tuple[Scorer, dict[str, Any]]] = {}
    if args.failure_scorer == "auto":
        # The bundle's own ConfidNet head competes as it is (it was trained on this model),
        # unless a recipe was asked for; a bundle without one gets one trained first.
        head = failure if m.failure.name == "confidnet" and not recipe_asked else new_head()
        failure, extra["failure_fit"] = choose_failure_scorer(model, {"confidnet": head}, splits, temperature)
    elif args.failure_scorer:  # asked for by name: fitted anew, even if it is the same kind
        extra.pop("failure_fit", None)  # auto's choice, which this name overrides
        if args.failure_scorer == "confidnet":
            failure = new_head()
        else:
            drop_head()
            failure, fitted = fit_named(args.failure_scorer, model, splits)  # Mahalanobis and ODIN are fitted, the others built
            by_name[args.failure_scorer] = (failure, fitted)
            if fitted:  # ODIN's chosen eps and the proxy AUROCs it was chosen by
                extra["failure_fit"] = fitted
    ood, chosen = fit_ood_scorer(args.ood_scorer or m.ood.name, model, splits, temperature, by_name)
    if chosen:
        extra["ood_fit"] = chosen
    spec = BundleSpec(
        name=args.name or m.name,
        version=args.version or m.version,
        method=m.method,
        architecture=m.architecture,
        arch_params=m.arch_params,
        method_params=m.method_params,
        failure_scorer=failure,
        ood_scorer=ood,
        target_risk=target_risk,
        risk_confidence=risk_confidence,
        ood_pass_rate=ood_pass_rate,
        alpha=alpha,
        training_seconds=m.training_seconds - replaced + (time.perf_counter() - start),
        extra_metrics=extra,
        temperature=temperature,
    )
    test = None if args.skip_test else load_mnist(data_dir, train=False)
    manifest = finalize(model, spec, splits, Path(args.out), test=test)
    print(json.dumps({"bundle": args.out, "ood": manifest.ood.name, "failure": manifest.failure.name}, indent=2))
    warn_if_all_abstain(manifest)
    return 0


def register(sub: argparse._SubParsersAction, data_dir: str) -> None:
    p = sub.add_parser("refit", help="re-fit scorers, temperature and thresholds of a bundle without retraining")
    p.add_argument("bundle", help="the bundle folder to re-fit (read, never written)")
    p.add_argument("--out", required=True, help="folder to write the re-fitted bundle to: new, empty, or another bundle to replace")
    p.add_argument("--data-dir", default=data_dir, help="torchvision root holding MNIST/raw (VIGIL_DATA_DIR); the bundle's own splits are rebuilt from it")
    p.add_argument("--name", default=None, help="the model's name in the manifest and the API (default: the bundle's)")
    p.add_argument("--version", default=None, help="the model's version (default: the bundle's; give a new one, since replay audits rows by name and version)")
    p.add_argument("--failure-scorer", default=None, help="re-fit the failure scorer under this name (confidnet trains a new head; auto: the best on the cal split, see training/failure_select.py)")
    p.add_argument(
        "--confidnet-passes",
        default=None,
        help="with --failure-scorer confidnet or auto: train the new head on these passes (shift, the default, or distort; see vigil train)",
    )
    p.add_argument(
        "--confidnet-finetune-epochs",
        type=nonnegative_int,
        default=0,
        help="with --failure-scorer confidnet or auto, on a single network: fine-tune a copy of the encoder with the new head for N epochs",
    )
    p.add_argument("--ood-scorer", default=None, help="default: the bundle's current scorer")
    p.add_argument("--target-risk", type=float, default=None, help="max error rate among accepted validation predictions (default: the bundle's own)")
    p.add_argument("--risk-confidence", type=confidence_or_off, default=None, help="bound the target risk with this probability (SGR), or off: meet it on validation only (default: the bundle's own)")
    p.add_argument("--ood-pass-rate", type=float, default=None, help="share of in-distribution validation inputs the OOD gate passes (default: the bundle's own)")
    p.add_argument("--alpha", type=float, default=None, help="conformal miscoverage (default: the bundle's own)")
    p.add_argument("--skip-test", action="store_true", help="do not measure the re-fitted bundle on MNIST test (vigil evaluate does)")
    p.set_defaults(func=run)
