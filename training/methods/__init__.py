"""Trainers by method name: each returns a trained model and its bundle spec."""

from __future__ import annotations

from collections.abc import Callable

from models.base import UncertaintyModel
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.deterministic import train_deterministic
from training.options import MethodOptions

Trainer = Callable[[Splits, TrainConfig, MethodOptions], tuple[UncertaintyModel, BundleSpec]]

TRAINERS: dict[str, Trainer] = {"deterministic": train_deterministic}
