"""`vigil evaluate-ood BUNDLE`: every OOD scorer on one model, MNIST test vs OOD sets.

In-distribution (positive) = MNIST test; OOD = Fashion-MNIST test, the generated sets of
`training.ood_sets` and optionally `--ood-dir`. Every scorer runs on the same model in
the same run: the bundle's served scorer as stored (its fitted state, its threshold),
the others fitted now by `training.scorer_fit` on MNIST train / validation only.
Metrics (training/metrics.py `ood_detection`): AUROC, FPR at 95% TPR, detection error,
AUPR-In, AUPR-Out. Also the served gate and failure threshold on the test set: share of
ID test inputs the OOD gate passes, share of each OOD set it rejects, and the selective
risk and coverage of the failure threshold (decisions as the service makes them).
Against Fashion-MNIST (issue 4's comparison), each scorer's AUROC gain over MSP comes
with a paired bootstrap 95 % interval (`vs_msp`), so a difference of a few hundredths
is not read as a win.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from models.bundle import Bundle, load_bundle
from models.pipeline import Pipeline
from models.scorers.base import Scorer
from models.usage import UsageError
from training.data import Split, Splits, load_mnist, make_splits
from training.evaluate import percent_or_none
from training.finalize import run_pipeline
from training.metrics import auroc_gain, ood_detection
from training.ood_report import markdown
from training.ood_select import batch_scores
from training.ood_sets import fashion_mnist, generated_sets, load_folder
from training.options import check_output_files, positive_int, seed_int
from training.scorer_fit import SAMPLED_CANDIDATES, fit_named

SCORERS = ("msp", "odin", "energy", "mahalanobis", "mahalanobis_layers")


def build_scorers(bundle: Bundle, splits: Splits) -> tuple[dict[str, Scorer], dict[str, dict[str, Any]]]:
    """The served scorer as stored, every other one fitted on ID data (skips what the model lacks).

    Returns the scorers and, per scorer, what its fitting chose (ODIN's eps and its criterion...).
    """
    model = bundle.model
    with torch.no_grad():
        sampled = model.sample_logits(torch.zeros(1, *splits.val.x.shape[1:])).shape[0] > 1
    names = [*SCORERS, *(SAMPLED_CANDIDATES if sampled else ())]
    served = bundle.manifest.ood.name
    out: dict[str, Scorer] = {served: bundle.ood_scorer}
    reports: dict[str, dict[str, Any]] = {served: {"served": True, **bundle.manifest.metrics.get("ood_fit", {})}}
    for name in names:
        if name == served:
            continue
        try:
            out[name], reports[name] = fit_named(name, model, splits)
        except NotImplementedError:
            continue  # e.g. per-layer features on a model that has none
    return out, reports


def fitting_splits(bundle: Bundle, args: argparse.Namespace) -> Splits:
    """MNIST train/val as the bundle was trained on them (manifest record), else as asked; never test."""
    record = bundle.manifest.metrics.get("training") or {}
    if args.val_size and "val_size" in record and args.val_size > record["val_size"]:
        # The split takes validation images first: a larger one reaches into the images the
        # network was trained on, and the scores fitted and chosen there would flatter it.
        raise UsageError(f"--val-size {args.val_size} is over the bundle's {record['val_size']}: its validation images would include ones it was trained on")
    val_size = args.val_size or record.get("val_size", 10_000)
    train_size = args.train_size or record.get("train_size")
    return make_splits(Path(args.data_dir), val_size=val_size, seed=record.get("seed", args.seed), train_size=train_size)


def served_figures(bundle: Bundle, pipeline: Pipeline, test: Split, ood_scores: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The served thresholds on test: gate pass / reject rates, selective risk and coverage (%)."""
    out = run_pipeline(pipeline, test)
    correct = out.probs.argmax(-1) == test.y
    ood_ok = out.ood_score <= bundle.manifest.ood.threshold
    confident = out.failure_score <= bundle.manifest.failure.threshold  # what the failure threshold was fitted for
    accepted = ood_ok & confident
    val = bundle.manifest.metrics.get("validation", {})
    t_ood = bundle.manifest.ood.threshold
    return {
        "ood_gate": {"scorer": bundle.manifest.ood.name, "threshold": t_ood, "id_test_pass_rate": 100 * float(ood_ok.float().mean())},
        "ood_rejected": {k: 100 * float((s > t_ood).float().mean()) for k, s in ood_scores.items()},
        "decisions_id_test": {
            "accept": 100 * float(accepted.float().mean()),
            "abstain": 100 * float((ood_ok & ~accepted).float().mean()),
            "reject_ood": 100 * float((~ood_ok).float().mean()),
        },
        "selective": {
            "failure_scorer": bundle.manifest.failure.name,
            "validation_risk": percent_or_none(val.get("selective_risk", float("nan"))),
            "validation_coverage": 100 * float(val.get("coverage", float("nan"))),
            "test_risk": 100 * float((~correct[confident]).float().mean()) if confident.any() else None,  # undefined, not 0
            "test_coverage": 100 * float(confident.float().mean()),
        },
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    data_dir = Path(args.data_dir)
    bundle = load_bundle(Path(args.bundle))
    pipeline = Pipeline(bundle)
    test = load_mnist(data_dir, train=False).head(args.limit)
    sets = {"fashion_mnist": fashion_mnist(data_dir, args.limit)}
    sets.update(generated_sets(test.x, args.limit or len(test), args.seed))
    skipped: list[str] = []
    if args.ood_dir:
        sets["ood_dir"], skipped = load_folder(Path(args.ood_dir), bundle.manifest.input)
    splits = fitting_splits(bundle, args)
    scorers, fitted = build_scorers(bundle, splits)
    t = bundle.manifest.temperature
    id_scores = batch_scores(scorers, bundle.model, pipeline.normalise(test.x), t)
    results: dict[str, dict[str, dict[str, float]]] = {}
    vs_msp: dict[str, dict[str, float]] = {}
    served_ood: dict[str, torch.Tensor] = {}
    for set_name, x in sets.items():
        ood = batch_scores(scorers, bundle.model, pipeline.normalise(x), t)
        results[set_name] = {s: ood_detection(id_scores[s], ood[s]) for s in scorers}
        if set_name == "fashion_mnist" and "msp" in scorers:
            vs_msp = {s: auroc_gain(id_scores[s], ood[s], id_scores["msp"], ood["msp"], args.resamples) for s in scorers if s != "msp"}
        served_ood[set_name] = ood[bundle.manifest.ood.name]
    return {
        "bundle": str(args.bundle),
        "model": {"name": bundle.manifest.name, "method": bundle.manifest.method},
        "n": {"mnist_test": len(test), **{k: len(v) for k, v in sets.items()}},
        "ood_dir_unreadable": skipped,
        "fitted": fitted,
        "ood": results,
        "vs_msp": {"fashion_mnist": vs_msp},
        "served": served_figures(bundle, pipeline, test, served_ood),
    }


def run(args: argparse.Namespace) -> int:
    check_output_files(out=args.out, markdown=args.markdown)
    res = evaluate(args)
    table = markdown(res)
    print(table)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


def register(sub: argparse._SubParsersAction, data_dir: str) -> None:
    """Add `evaluate-ood` to the `vigil` parser."""
    p = sub.add_parser("evaluate-ood", help="every OOD scorer of one bundle: MNIST test vs OOD sets")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--data-dir", default=data_dir, help="torchvision root holding MNIST/raw and FashionMNIST/raw")
    p.add_argument("--ood-dir", default=None, help="extra OOD set: a folder of images, converted like uploads")
    p.add_argument("--out", default=None, help="write all numbers as JSON")
    p.add_argument("--markdown", default=None, help="write the tables as markdown")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the generated sets (and of the fitting splits if the bundle has no record)")
    p.add_argument("--val-size", type=positive_int, default=None, help="ID validation images for fitting (default: the bundle's)")
    p.add_argument("--train-size", type=positive_int, default=None, help="cap on ID training images for fitting (default: the bundle's)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N images of each set (tests)")
    p.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples of the AUROC gain over MSP")
    p.set_defaults(func=run)
