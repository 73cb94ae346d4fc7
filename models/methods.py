"""Method name -> constructor of an `UncertaintyModel` from manifest hyperparameters.

Each uncertainty method lives in its own module and registers itself here, so a new
method is one new module and one line, and the bundle loader needs no changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.architectures import build_architecture
from models.base import UncertaintyModel
from models.deterministic import Deterministic
from models.ensemble import build_ensemble
from models.laplace import build_laplace
from models.mc_dropout import build_mc_dropout
from models.variational_cnn import build_variational

MethodBuilder = Callable[[str, dict[str, Any], dict[str, Any]], UncertaintyModel]


def _deterministic(arch: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> UncertaintyModel:
    return Deterministic(build_architecture(arch, **arch_params))


METHODS: dict[str, MethodBuilder] = {"deterministic": _deterministic}
METHODS.update(
    {"mc_dropout": build_mc_dropout, "ensemble": build_ensemble, "variational": build_variational, "laplace": build_laplace}
)


def build_model(method: str, arch: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> UncertaintyModel:
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    return METHODS[method](arch, arch_params, method_params)
