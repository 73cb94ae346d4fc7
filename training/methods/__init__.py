"""Trainers by method name: each returns a trained model and its bundle spec."""

from __future__ import annotations

from collections.abc import Callable

from models.base import UncertaintyModel
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.confidnet import train_confidnet_method
from training.methods.deterministic import train_deterministic
from training.methods.ensemble import train_ensemble
from training.methods.laplace import train_laplace
from training.methods.mc_dropout import train_mc_dropout
from training.methods.variational import train_variational
from training.options import MethodOptions

Trainer = Callable[[Splits, TrainConfig, MethodOptions], tuple[UncertaintyModel, BundleSpec]]

TRAINERS: dict[str, Trainer] = {
    "deterministic": train_deterministic,
    "mc_dropout": train_mc_dropout,
    "ensemble": train_ensemble,
    "variational": train_variational,
    "laplace": train_laplace,
    "confidnet": train_confidnet_method,
}
