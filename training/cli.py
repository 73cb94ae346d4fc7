"""`vigil train`, `vigil evaluate`, `vigil evaluate-ood`: registered as a `vigil.commands` plugin.

The service's CLI discovers these through an entry point, so `service` never imports
`training` (DESIGN.md's one direction of imports).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.usage import UsageError
from training import evaluate, evaluate_ood, refit
from training.data import load_mnist, make_splits
from training.finalize import finalize, warn_if_all_abstain
from training.loop import TrainConfig
from training.methods import TRAINERS
from training.options import (
    MAX_SEED,
    MethodOptions,
    check_confidnet_options,
    check_identity,
    check_method_options,
    check_scorer_names,
    check_writable,
    default_epochs,
    nonnegative_int,
    positive_int,
    seed_int,
)
from training.settings import TrainingSettings


def _train(args: argparse.Namespace) -> int:
    """One bundle, or with `--seeds N` one bundle per seed in OUT/seed<k> (for `vigil evaluate OUT/seed*`)."""
    if args.seed + args.seeds - 1 > MAX_SEED:  # the last seed would repeat an earlier one's draws
        raise UsageError(f"--seed {args.seed} with --seeds {args.seeds} goes past the largest seed, {MAX_SEED}")
    if args.seeds > 1:
        for k in range(args.seeds):
            one = argparse.Namespace(**{**vars(args), "seeds": 1, "seed": args.seed + k, "out": str(Path(args.out) / f"seed{args.seed + k}")})
            _train(one)
        return 0
    failure_scorer = args.failure_scorer or ("confidnet" if args.method == "confidnet" else "msp")
    check_scorer_names(failure_scorer, args.ood_scorer)
    check_method_options(args.method, args.members, args.samples, (failure_scorer, args.ood_scorer))
    check_identity(args.name, args.version)
    check_writable(Path(args.out))
    check_confidnet_options(args.method, failure_scorer, args.confidnet_passes, args.confidnet_finetune_epochs)
    if args.base_bundle and args.method == "deterministic":  # before the data are read
        raise UsageError("--base-bundle builds another method on a deterministic network; --method deterministic would only copy it")
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir)
    splits = make_splits(data_dir, val_size=args.val_size, seed=args.seed, train_size=args.train_size, download=args.download)
    epochs = args.epochs if args.epochs is not None else default_epochs(args.method, args.base_bundle)
    cfg = TrainConfig(epochs=epochs, seed=args.seed, progress=not args.quiet)
    opts = MethodOptions(
        name=args.name or f"mnist-{args.method.replace('_', '-')}",
        version=args.version,
        members=args.members or MethodOptions.members,
        num_samples=args.samples,
        failure_scorer=failure_scorer,
        ood_scorer=args.ood_scorer,
        target_risk=args.target_risk,
        risk_confidence=None if args.risk_confidence == "off" else args.risk_confidence,
        ood_pass_rate=args.ood_pass_rate,
        alpha=args.alpha,
        base_bundle=args.base_bundle,
        confidnet_finetune_epochs=args.confidnet_finetune_epochs,
        confidnet_passes=args.confidnet_passes or "shift",
    )
    model, spec = TRAINERS[args.method](splits, cfg, opts)
    # Enough to rebuild the same splits later (`vigil refit`).
    spec.extra_metrics["training"] = {"seed": args.seed, "val_size": args.val_size, "train_size": args.train_size, "epochs": epochs}
    test = None if args.skip_test else load_mnist(data_dir, train=False, download=args.download)
    manifest = finalize(model, spec, splits, Path(args.out), test=test)
    summary = {
        "bundle": str(args.out),
        "failure": manifest.failure.name,  # what `auto` chose, as refit says it
        "ood": manifest.ood.name,
        "temperature": manifest.temperature,
        "metrics": manifest.metrics.get("test", manifest.metrics["validation"]),
    }
    print(json.dumps(summary, indent=2))
    warn_if_all_abstain(manifest)
    return 0



def register(sub: argparse._SubParsersAction) -> None:
    """Add the training commands to the `vigil` parser."""
    settings = TrainingSettings()
    p = sub.add_parser("train", help="train a model and write a bundle")
    p.add_argument("--method", choices=sorted(TRAINERS), default="deterministic")
    p.add_argument("--data-dir", default=str(settings.data_dir), help="torchvision root holding MNIST/raw (VIGIL_DATA_DIR)")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST (needs internet)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--name", default=None, help="the model's name in the manifest and the API (default: mnist-<method>)")
    p.add_argument("--version", default="1", help="the model's version in the manifest and the API (default: 1)")
    p.add_argument(
        "--epochs", type=positive_int, default=None, help="training epochs (default: 6; variational 20, or 4 from a --base-bundle's weights)"
    )
    p.add_argument("--seed", type=seed_int, default=0, help="training seed: initialisation, data split, sampling (default: 0)")
    p.add_argument("--seeds", type=positive_int, default=1, help="train N seeds (seed, seed+1, ...) into OUT/seed<k>")
    p.add_argument("--train-size", type=positive_int, default=None, help="cap on training images (tests)")
    p.add_argument("--val-size", type=positive_int, default=10_000, help="validation + conformal calibration images (default: 10000)")
    p.add_argument("--members", type=positive_int, default=None, help="ensemble members (ensemble only; default: 5)")
    p.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="samples per input at inference (mc_dropout, laplace, variational; default: 20, variational 10, each of whose samples runs the whole network)",
    )
    p.add_argument(
        "--failure-scorer",
        default=None,
        help="msp (the default; confidnet for --method confidnet), entropy, mutual_information (sampled models), "
        "odin, energy, mahalanobis, mahalanobis_layers (fitted as for OOD), confidnet (trains a ConfidNet head), or auto: a ConfidNet head is trained and the best of it, MCP and the others on held-out data "
        "is served (training/failure_select.py)",
    )
    p.add_argument("--ood-scorer", default="auto", help="OOD scorer, or auto (the default): the best by an ID-only criterion (training/scorer_fit.py)")
    p.add_argument("--target-risk", type=float, default=0.005, help="max error rate among accepted validation predictions (default: 0.005)")
    p.add_argument("--risk-confidence", type=refit.confidence_or_off, default=None, help="bound the target risk with this probability (e.g. 0.9; SGR, Geifman & El-Yaniv 2017), or off: meet it on validation only (default: off)")
    p.add_argument("--ood-pass-rate", type=float, default=0.99, help="share of in-distribution validation inputs the OOD gate passes (default: 0.99)")
    p.add_argument("--alpha", type=float, default=0.01, help="conformal miscoverage (default: 0.01)")
    p.add_argument("--base-bundle", default=None, help="mc_dropout / laplace / confidnet: reuse this deterministic bundle's network; ensemble: it is member 0; variational: start its posterior means there (same --seed and sizes)")
    p.add_argument(
        "--confidnet-finetune-epochs",
        type=nonnegative_int,
        default=0,
        help="ConfidNet's second phase: fine-tune a copy of the encoder with the head for N epochs (deterministic / confidnet only; "
        "0, the default, keeps the head on the frozen classifier's features)",
    )
    p.add_argument(
        "--confidnet-passes",
        default=None,
        help="how ConfidNet's training passes perturb the digits: shift (the default) or distort (a random affine map per digit; "
        "+2.4 AUPR-Error points on average over 5 single networks, none on an ensemble; training/confidnet_fit.py)",
    )
    p.add_argument("--threads", type=nonnegative_int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--skip-test", action="store_true", help="do not measure on MNIST test")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
    evaluate.register(sub, str(settings.data_dir))
    refit.register(sub, str(settings.data_dir))
    evaluate_ood.register(sub, str(settings.data_dir))
