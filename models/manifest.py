"""The bundle manifest: a self-describing, schema-validated JSON document.

Everything the service needs to serve a model without code changes lives here:
architecture and method hyperparameters, input spec, calibration, scorer choices and
thresholds, the conformal quantile, and the validation metrics and reference
distributions that reports compare live traffic with.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    """How an upload becomes a tensor: size, channels, and per-channel normalisation."""

    channels: int = Field(1, ge=1, le=4)
    height: int = Field(28, ge=4, le=1024)
    width: int = Field(28, ge=4, le=1024)
    mean: list[float] = [0.1307]
    std: list[float] = [0.3081]
    #: MNIST digits are light strokes on black; a photo of ink on paper is the reverse.
    #: When true, the service inverts uploads whose border is mostly light.
    auto_invert: bool = True


class ScorerSpec(_Strict):
    """One scorer as served: its name, hyperparameters and flagging threshold."""

    name: str
    params: dict[str, Any] = {}
    threshold: float
    #: Plain-words note of how the threshold was chosen (shown in the model card).
    criterion: str = ""
    #: The training option the threshold was fitted for, as a number: the failure
    #: scorer's target selective risk, the OOD scorer's in-distribution pass rate.
    #: None in bundles written before it was recorded.
    target: float | None = Field(None, ge=0, le=1)
    #: The failure threshold's confidence that the risk is within `target` (SGR); None: the
    #: target is met on validation only.
    confidence: float | None = Field(None, gt=0, lt=1)


class ConformalSpec(_Strict):
    # qhat is +inf when the calibration set is too small for 1 - alpha (every class is
    # then in the set); JSON has no infinity, so it is written as the string "Infinity".
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    method: Literal["aps"] = "aps"
    alpha: float = Field(0.01, gt=0, lt=1)
    #: > 0 also refuses NaN, which would make every prediction set empty.
    qhat: float = Field(gt=0)


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    version: str = Field(min_length=1, max_length=50)
    method: str
    architecture: str
    arch_params: dict[str, Any] = {}
    method_params: dict[str, Any] = {}
    class_names: list[str] = Field(min_length=2)
    input: InputSpec = InputSpec()
    temperature: float = Field(gt=0)
    failure: ScorerSpec
    ood: ScorerSpec
    conformal: ConformalSpec
    #: Test/validation metrics recorded at training time (accuracy, ECE before/after...).
    metrics: dict[str, Any] = {}
    #: Validation-set samples of served scores, for drift tests: {"confidence": [...], "ood_score": [...]}.
    reference: dict[str, list[float]] = {}
    data_fingerprint: str = ""
    created_at: str = ""
    training_seconds: float = 0.0
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def digest(self) -> str:
        """SHA-256 of everything the bundle serves: this manifest, weights' checksum included.

        Two processes that loaded the same bundle agree on it; a changed threshold, seed,
        temperature or version, or other weights, changes it.
        """
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()
