"""Options shared by every trainer (parsed from `vigil train`'s command line)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.bundle import MANIFEST, WEIGHTS
from models.manifest import Manifest
from models.scorers.registry import SCORERS
from models.usage import UsageError, int_in, nearest_existing, prepare_output_file
from training.confidnet_fit import PASSES
from training.loop import TrainConfig

#: argparse types of `vigil train`, `evaluate`, `evaluate-ood` and `refit`.
positive_int = int_in(1, None, "positive integer")
nonnegative_int = int_in(0, None, "non-negative integer")
#: torch's CPU generator keeps a seed's low 32 bits: seeds 0 and 2**32 would train alike. An
#: ensemble's members draw from seed * 1000 + i (training/methods/ensemble.py), so the seed
#: stops where those still fit in 32 bits: seeds 0 and 2**29 shared every member's draws.
MAX_SEED = (2**32 - 1000) // 1000
seed_int = int_in(0, MAX_SEED, "seed")


#: Failure scorers only: a ConfidNet head predicts this model's errors on digits, and says
#: nothing trained about inputs that are no digits; shift consistency asks whether a digit's
#: class survives a nudge, which says nothing about whether it is a digit.
FAILURE_ONLY = ("confidnet", "shift_consistency")
#: Methods that take each option; anything else would ignore it without a word.
SAMPLED_METHODS = ("mc_dropout", "laplace", "variational")


def check_scorer_names(failure_scorer: str | None, ood_scorer: str | None) -> None:
    """Refuse an unknown scorer name before any training (it was refused after it all)."""
    known = sorted({*SCORERS, "auto"})
    ood_known = sorted(set(known) - set(FAILURE_ONLY))  # what --ood-scorer takes: not the failure-only ones
    for flag, name, names in (("--failure-scorer", failure_scorer, known), ("--ood-scorer", ood_scorer, ood_known)):
        if name is not None and name not in known:
            raise UsageError(f"{flag}: unknown scorer {name!r}; known: {', '.join(names)}")
    if ood_scorer in FAILURE_ONLY:
        ood = sorted({*SCORERS, "auto"} - set(FAILURE_ONLY))
        raise UsageError(f"--ood-scorer: {ood_scorer} is a failure scorer (it predicts this model's errors on digits); OOD scorers: {', '.join(ood)}")


def check_method_options(method: str, members: int | None, samples: int | None, scorers: tuple[str | None, ...]) -> None:
    """Refuse, before any training, an option the method would ignore, or a scorer that would
    give every input the same score.

    `members` / `samples` are as given on the command line (None: not asked for). Mutual
    information is the spread between samples: 0 for every input of a model answering with
    one, whose threshold then abstains on (or, for OOD, passes) everything.
    """
    if members is not None and method != "ensemble":
        raise UsageError(f"--members is for --method ensemble, not {method}")
    if samples is not None and method not in SAMPLED_METHODS:
        raise UsageError(f"--samples is for --method {', '.join(SAMPLED_METHODS)}, not {method}")
    check_spread_scorers(method, members, samples, scorers)


def check_spread_scorers(method: str, members: int | None, samples: int | None, scorers: tuple[str | None, ...]) -> None:
    """Refuse mutual information on a model that answers with one sample (see above): a
    deterministic network or ConfidNet, or one ensemble member, or one posterior sample."""
    one_sample = method in ("deterministic", "confidnet") or members == 1 or samples == 1
    if one_sample and "mutual_information" in scorers:
        raise UsageError(f"mutual_information is 0 for every input of a model that answers with one sample ({method}); use entropy or msp")


def check_identity(name: str | None, version: str | None) -> None:
    """Refuse a `--name` / `--version` the manifest would refuse, before any training (it
    was refused when the bundle was written, after all the work)."""
    for field_name, value in (("name", name), ("version", version)):
        if value is None:
            continue
        try:
            Manifest.__pydantic_validator__.validate_assignment(Manifest.model_construct(), field_name, value)
        except ValidationError as e:
            raise UsageError(f"--{field_name} {value!r}: {e.errors()[0]['msg']}") from None


def check_writable(path: Path, source: Path | None = None) -> None:
    """Refuse, before any work, an output folder that cannot be written, that holds files but
    no bundle (a bundle's files would be dropped among them), or that is `source`, the bundle
    being read (refit rewrote it in place, under the version its logged answers name)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory")
    if source is not None and path.exists() and path.resolve() == source.resolve():
        raise UsageError(f"--out {path} is the bundle being refitted: write the refitted bundle to a new folder")
    # A bundle's own files (weights written before the manifest: a run cut short) may be there.
    if path.is_dir() and any(p.name not in (WEIGHTS, MANIFEST) for p in path.iterdir()) and not (path / MANIFEST).is_file():
        raise UsageError(f"--out {path} holds files but no bundle: name an empty or new folder, or a bundle to replace")
    parent = nearest_existing(path)
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path}: {parent} is not a writable directory")


def check_output_files(**paths: str | None) -> None:
    """Before an evaluation: each given output file (`out=`, `markdown=`: the flag's name) can
    be written, its folders made."""
    for flag, path in paths.items():
        if path:
            prepare_output_file(Path(path), f"--{flag}")


def check_fitting_options(target_risk: float, ood_pass_rate: float, alpha: float, risk_confidence: float | None = None) -> None:
    """Refuse out-of-range threshold options up front: the bundle's schema would refuse them
    only when it is written, after all the training (`vigil train`) or fitting (`vigil refit`)."""
    if not 0.0 <= target_risk < 1.0:
        raise UsageError(f"target risk must be in [0, 1), got {target_risk}")
    if risk_confidence is not None and not 0.0 < risk_confidence < 1.0:
        raise UsageError(f"risk confidence must be in (0, 1), got {risk_confidence}")
    if not 0.0 < ood_pass_rate <= 1.0:
        raise UsageError(f"OOD pass rate must be in (0, 1], got {ood_pass_rate}")
    if not 0.0 < alpha < 1.0:
        raise UsageError(f"conformal alpha must be in (0, 1), got {alpha}")


def check_confidnet_options(method: str, failure_scorer: str | None, passes: str | None, finetune_epochs: int) -> None:
    """Refuse a ConfidNet recipe that no head would use, or that cannot run, before any work.

    `passes` / `finetune_epochs` are as given on the command line (None / 0: not asked for);
    asking for them without a ConfidNet head (`failure_scorer` confidnet or auto) would
    otherwise be ignored without a word.
    """
    if passes is not None and passes not in PASSES:
        raise UsageError(f"unknown ConfidNet passes {passes!r}; known: {sorted(PASSES)}")
    # A negative epoch count is refused by argparse (`nonnegative_int`) and by MethodOptions.
    asked = [flag for flag, on in (("--confidnet-passes", passes is not None), ("--confidnet-finetune-epochs", finetune_epochs > 0)) if on]
    if asked and failure_scorer not in ("confidnet", "auto"):
        verb = "shapes" if len(asked) == 1 else "shape"
        given = f"not {failure_scorer}" if failure_scorer else "and it was not given"
        raise UsageError(f"{' and '.join(asked)} {verb} a ConfidNet head: --failure-scorer must be confidnet or auto, {given}")
    if finetune_epochs and method not in ("deterministic", "confidnet"):
        # An ensemble would need one encoder copy per member; sampled models have no single encoder.
        raise UsageError(f"--confidnet-finetune-epochs needs a single network (method deterministic or confidnet), not {method}")


#: Epochs when `vigil train` is given none: enough for every method to pass issue 3's 99.2 %
#: test accuracy. A variational network from a random start needs 20 (14.4 min on seed 0,
#: where 12 stopped at 99.18 %); from a trained network's weights (`--base-bundle`) 4 reach
#: 99.37 % (the Makefile's `results` notes).
VARIATIONAL_EPOCHS = {"from_scratch": 20, "from_base": 4}


def default_epochs(method: str, base_bundle: str | None) -> int:
    """Training epochs for `method` when none are asked for."""
    if method == "variational":
        return VARIATIONAL_EPOCHS["from_base" if base_bundle else "from_scratch"]
    return TrainConfig.epochs


@dataclass
class MethodOptions:
    name: str = "mnist-deterministic"
    version: str = "1"
    arch_params: dict[str, Any] = field(default_factory=lambda: {"widths": [16, 32, 64], "hidden": 128, "dropout": 0.25})
    #: Ensemble members.
    members: int = 5
    #: MC dropout / Laplace / variational samples per input at inference; None: the model
    #: factory's own default (models/: 20, variational 10).
    num_samples: int | None = None
    failure_scorer: str = "msp"
    #: As `vigil train`: the OOD scorer that wins the ID-only criterion (training/scorer_fit.py).
    ood_scorer: str = "auto"
    target_risk: float = 0.005
    #: None: the failure threshold meets the target risk on validation; a probability: it
    #: bounds it with that confidence (SGR, models/thresholds.py).
    risk_confidence: float | None = None
    ood_pass_rate: float = 0.99
    alpha: float = 0.01
    #: A deterministic bundle whose network the other methods build on (training/base_net.py):
    #: MC dropout, Laplace and ConfidNet use it as is, the ensemble as member 0, variational as its start.
    base_bundle: str | None = None
    #: ConfidNet's second phase (training/confidnet_finetune.py); 0 = the head on frozen features only.
    confidnet_finetune_epochs: int = 0
    #: How ConfidNet's training passes perturb the digits (training/confidnet_fit.py: shift or distort).
    confidnet_passes: str = "shift"

    def samples(self) -> dict[str, int]:
        """Keyword arguments for a sampling model's factory: the count asked for, else none
        (the factory's default applies; the defaults live there only)."""
        return {} if self.num_samples is None else {"num_samples": self.num_samples}

    def __post_init__(self) -> None:
        check_fitting_options(self.target_risk, self.ood_pass_rate, self.alpha, self.risk_confidence)
        if self.confidnet_finetune_epochs < 0:
            raise UsageError(f"ConfidNet fine-tuning epochs must be >= 0, got {self.confidnet_finetune_epochs}")
        if self.confidnet_passes not in PASSES:
            raise UsageError(f"unknown ConfidNet passes {self.confidnet_passes!r}; known: {sorted(PASSES)}")
