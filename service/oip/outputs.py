"""v1 predictions -> OIP named output tensors, so both APIs say exactly the same thing.

Each input's figures come from `build_prediction` (the v1 code path), which keeps the
decision rule in one place; this module only lays them out as tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.manifest import Manifest
from service.errors import ApiError, quoted
from service.oip.binary import encode, to_bytes
from service.oip.schemas import InferRequest, TensorMetadata
from service.schemas import PredictionPublic

#: name -> (datatype, has a class axis, meaning); the meanings are the v1 field descriptions.
OUTPUTS: dict[str, tuple[str, bool, str]] = {
    "probabilities": (
        "FP32",
        True,
        "calibrated class probabilities, averaged over samples",
    ),
    "predicted_label": ("INT64", False, "index of the most probable class"),
    "class_name": ("BYTES", False, "name of that class"),
    "confidence": ("FP32", False, "calibrated probability of the predicted class"),
    "predictive_entropy": (
        "FP32",
        False,
        "entropy of the averaged predictive (nats): total uncertainty",
    ),
    "mutual_information": (
        "FP32",
        False,
        "epistemic part of the entropy (nats); 0 for single-sample models",
    ),
    "failure_score": ("FP32", False, "higher = prediction more likely wrong"),
    "failure_flagged": ("BOOL", False, "failure_score > the failure threshold"),
    "ood_score": ("FP32", False, "higher = input more likely out of distribution"),
    "ood_flagged": ("BOOL", False, "ood_score > the OOD threshold"),
    "prediction_set": ("BOOL", True, "conformal prediction set as a class mask"),
    "decision": ("BYTES", False, "accept, abstain or reject_ood"),
    "request_id": ("BYTES", False, "request-log id of each input (for feedback)"),
}


def _flag(params: dict[str, Any] | None, key: str, default: bool, where: str) -> bool:
    # A real JSON boolean only: bool("false") is True, so a string would silently flip it.
    value = (params or {}).get(key, default)
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_parameter", f"{where}.{key} must be true or false, got {quoted(value)}")
    return value


def selected(req: InferRequest) -> list[tuple[str, bool]]:
    """(output name, as binary) for each requested output; checked before any inference."""
    default_binary = _flag(req.parameters, "binary_data_output", False, "parameters")
    if not req.outputs:
        return [(name, default_binary) for name in OUTPUTS]
    picks = []
    for o in req.outputs:
        if o.name not in OUTPUTS:
            raise ApiError(
                400,
                "unknown_output",
                f"no output named {quoted(o.name)}; outputs: {', '.join(OUTPUTS)}",
            )
        if any(name == o.name for name, _ in picks):  # the answer has one tensor per name
            raise ApiError(400, "repeated_output", f"output {quoted(o.name)} is asked for more than once")
        if "classification" in (o.parameters or {}):
            # Triton's classification extension (top-k class strings) is not served; ignoring
            # it would hand back a tensor of another shape than the client decodes.
            raise ApiError(400, "unsupported_parameter", f"outputs[{quoted(o.name)}].parameters.classification: the classification extension is not supported; ask for 'predicted_label' or 'probabilities'")
        picks.append((o.name, _flag(o.parameters, "binary_data", default_binary, f"outputs[{quoted(o.name)}].parameters")))
    return picks


def metadata(num_classes: int) -> list[TensorMetadata]:
    return [
        TensorMetadata(name=n, datatype=d, shape=[-1, num_classes] if k else [-1])
        for n, (d, k, _) in OUTPUTS.items()
    ]


def _column(name: str, preds: list[PredictionPublic], k: int) -> list[Any]:
    """The flat, row-major values of one output over the batch."""
    pick = {
        "probabilities": lambda p: p.probabilities,
        "predicted_label": lambda p: p.prediction.label,
        "class_name": lambda p: p.prediction.class_name,
        "confidence": lambda p: p.confidence,
        "predictive_entropy": lambda p: p.uncertainty.predictive_entropy,
        "mutual_information": lambda p: p.uncertainty.mutual_information or 0.0,
        "failure_score": lambda p: p.failure.score,
        "failure_flagged": lambda p: p.failure.flagged,
        "ood_score": lambda p: p.ood.score,
        "ood_flagged": lambda p: p.ood.flagged,
        "prediction_set": lambda p: [i in p.prediction_set for i in range(k)],
        "decision": lambda p: p.decision,
        "request_id": lambda p: p.request_id,
    }[name]
    values = [pick(p) for p in preds]
    return [v for row in values for v in row] if OUTPUTS[name][1] else values


def response(
    req: InferRequest,
    picks: list[tuple[str, bool]],
    preds: list[PredictionPublic],
    manifest: Manifest,
) -> tuple[Any, int | None]:
    """The response body: a JSON-able dict, or (bytes, header length) when any output is binary."""
    k = len(manifest.class_names)
    n = len(preds)
    outputs, chunks = [], []
    for name, binary in picks:
        datatype, per_class, _ = OUTPUTS[name]
        values = _column(name, preds, k)
        out: dict[str, Any] = {
            "name": name,
            "shape": [n, k] if per_class else [n],
            "datatype": datatype,
        }
        if binary:
            chunk = to_bytes(
                datatype, values if datatype == "BYTES" else np.asarray(values)
            )
            out["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            out["data"] = values
        outputs.append(out)
    body: dict[str, Any] = {
        "model_name": manifest.name,
        "model_version": manifest.version,
        "parameters": {
            "failure_method": manifest.failure.name,
            "failure_threshold": manifest.failure.threshold,
            "ood_method": manifest.ood.name,
            "ood_threshold": manifest.ood.threshold,
        },
        "outputs": outputs,
    }
    if req.id is not None:
        body["id"] = req.id
    if not chunks:
        return body, None
    return encode(body, chunks)
