"""The two configurations the benchmark times: the shipped default, and an ensemble + ODIN.

Timing needs no trained weights, so when no trained ensemble bundle is given, an
untrained 5-member `PackedEnsemble` (random initialisation, default SmallCNN widths)
with MSP failure and ODIN OOD scorers is written to a temporary folder. Its predictions
are meaningless; its arithmetic is exactly that of a trained one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.architectures import SmallCNN
from models.bundle import read_manifest, save_bundle
from models.deterministic import Deterministic
from models.ensemble import new_ensemble
from models.manifest import Manifest
from models.scorers.msp import MaxSoftmax
from models.scorers.odin import ODIN
from service.settings import DEFAULT_MODEL_DIR


def _shipped() -> tuple[Manifest, dict[str, Any]]:
    """The shipped manifest (read once per bundle written) and its architecture without dropout."""
    m = read_manifest(DEFAULT_MODEL_DIR)
    return m, {k: v for k, v in m.arch_params.items() if k != "dropout"}


def _fields(m: Manifest, arch: dict[str, Any], ood: ODIN | MaxSoftmax, name: str, method: str, method_params: dict[str, Any]) -> dict[str, Any]:
    base = m.model_dump(exclude={"weights_sha256", "metrics", "reference"})
    ood_spec = {"name": ood.name, "params": ood.params(), "threshold": 0.5, "criterion": "untrained: timing only"}
    return {
        **base,
        "name": name,
        "method": method,
        "arch_params": arch,
        "method_params": method_params,
        "failure": {"name": "msp", "params": {}, "threshold": 0.3, "criterion": "untrained: timing only"},
        "ood": ood_spec,
    }


def untrained_ensemble(out: Path, members: int = 5, ood: str = "odin", seed: int = 0) -> Path:
    """Write an untrained packed ensemble bundle with an ODIN (or MSP) OOD scorer to `out`."""
    torch.manual_seed(seed)
    m, arch = _shipped()
    model = new_ensemble(members, in_channels=m.input.channels, input_size=m.input.height, **arch)
    scorer: ODIN | MaxSoftmax = ODIN(temperature=1000.0, eps=0.0014, std=m.input.std) if ood == "odin" else MaxSoftmax()
    fields = _fields(m, arch, scorer, f"bench-ensemble{members}-{ood}", "ensemble", {"members": members})
    save_bundle(out, fields, model, MaxSoftmax(), scorer)
    return out


def single_msp(out: Path, seed: int = 0) -> Path:
    """One untrained SmallCNN of the ensemble members' shape, MSP for both scores: the
    single-model reference cost. (Not the shipped default: that is itself an ensemble.)"""
    torch.manual_seed(seed)
    m, arch = _shipped()
    model = Deterministic(SmallCNN(in_channels=m.input.channels, input_size=m.input.height, **arch))
    save_bundle(out, _fields(m, arch, MaxSoftmax(), "bench-single-msp", "deterministic", {}), model, MaxSoftmax(), MaxSoftmax())
    return out
