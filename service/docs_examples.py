"""Examples of real responses for schemas that do not carry their own (issue 7: /docs).

Taken from a real run of the shipped model and trimmed. tests/service/test_openapi_docs.py
validates every example against its model, so an example cannot drift from its schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.batch_schemas import BatchPredictionPublic
from service.oip import outputs
from service.oip.schemas import InferResponse, ModelMetadata
from service.routes.models import ModelCard
from service.schemas import Health, PredictionPublic
from service.schemas_log import FeedbackReceipt, LoggedRequestDetail, RequestPage
from service.schemas_report import SummaryPublic

RID = "cbd5ac3ff48540a28913ab348276bd87"
PREDICTION: dict[str, Any] = {
    "request_id": f"{RID}-0",
    "model": {"name": "mnist-default", "version": "3", "method": "ensemble"},
    "prediction": {"label": 7, "class_name": "7"},
    "probabilities": [2.5573e-10, 7.18662e-08, 4.85396e-07, 2.3943e-08, 1.88178e-09, 9.98644e-10, 6.82659e-14, 0.999998, 5.10702e-10, 9.7738e-07],
    "confidence": 0.9999984502792358,
    "uncertainty": {"predictive_entropy": 2.380923251621425e-05, "mutual_information": 5.057645466877148e-07},
    "failure": {
        "method": "msp",
        "score": 1.5497207641601562e-06,
        "threshold": 0.4291802644729614,
        "flagged": False,
    },
    "ood": {
        "method": "mahalanobis_layers",
        "score": -4.437993049621582,
        "threshold": 9.059219360351562,
        "flagged": False,
    },
    "prediction_set": [7],
    "decision": "accept",
    "latency_ms": 10.5,
    "samples": {
        "count": 5,
        "min": [4.20878e-11, 3.91202e-08, 8.5408e-08, 1.12615e-08, 1.27395e-10, 1.96383e-10, 1.17585e-14, 0.999997, 5.4254e-11, 7.3874e-08],
        "max": [6.29828e-10, 1.11329e-07, 1.06298e-06, 4.1667e-08, 4.39878e-09, 2.72855e-09, 1.62128e-13, 1.0, 1.62211e-09, 2.1475e-06],
        "predicted_class": [1.0, 0.999997, 0.999998, 0.999998, 1.0],
    },
}
FEEDBACK = {
    "request_id": RID,
    "label": 7,
    "note": "checked by hand",
    "created_at": "2026-11-28T10:49:50.325076Z",
    "replaced_at": None,
    "labelled_by": "key:9d670250a2b0",
}
ROW: dict[str, Any] = {
    "id": 1,
    "request_id": RID,
    "received_at": "2026-11-28T10:49:50.234894Z",
    "client_request_id": None,
    "endpoint": "/v1/predict",
    "client_id": "ip:56be82c6658422e95d2f84e2",
    "model_name": "mnist-default",
    "model_version": "3",
    "input_sha256": "0da840e0453b2f889e98c6ea1c8111edc5360295f7250719cce8ff5e4cf35523",
    "input_bytes": 250,
    "input_width": 28,
    "input_height": 28,
    "input_mode": "L",
    "has_input": False,
    "predicted_label": 7,
    "class_name": "7",
    "probabilities": PREDICTION["probabilities"],
    "confidence": PREDICTION["confidence"],
    "predictive_entropy": PREDICTION["uncertainty"]["predictive_entropy"],
    "mutual_information": PREDICTION["uncertainty"]["mutual_information"],
    "failure_method": "msp",
    "failure_score": PREDICTION["failure"]["score"],
    "failure_threshold": PREDICTION["failure"]["threshold"],
    "failure_flagged": False,
    "ood_method": "mahalanobis_layers",
    "ood_score": PREDICTION["ood"]["score"],
    "ood_threshold": PREDICTION["ood"]["threshold"],
    "ood_flagged": False,
    "prediction_set": [7],
    "decision": "accept",
    "latency_ms": 10.5,
    "http_status": 200,
    "error_code": None,
    "error_message": None,
    "writer_id": "vm-26598-3466c0a5",
    "seq": 1,
    "row_hash": "d98709f379ee58f5a922208778b94363d5b497c8ed56098a3293c47a8fba48a0",
    "feedback": FEEDBACK,
}
#: The summary's 15 equal-width bins (Guo et al.), as real answers carry them.
BINS = 15
EDGES = [round(i / BINS, 4) for i in range(BINS + 1)]


def _bin(i: int, count: int = 0, confidence: float | None = None, accuracy: float | None = None) -> dict[str, Any]:
    return {"lower": EDGES[i], "upper": EDGES[i + 1], "count": count, "confidence": confidence, "accuracy": accuracy}


#: The v2 answer for the same digit, with the outputs the /docs request example asks for.
INFER: dict[str, Any] = {
    "model_name": "mnist-default",
    "model_version": "3",
    "id": "my-call-1",
    "parameters": {"failure_method": "msp", "failure_threshold": 0.4291802644729614, "ood_method": "mahalanobis_layers", "ood_threshold": 9.059219360351562},
    "outputs": [
        {"name": "probabilities", "shape": [1, 10], "datatype": "FP32", "data": PREDICTION["probabilities"]},
        {"name": "decision", "shape": [1], "datatype": "BYTES", "data": ["accept"]},
        {"name": "request_id", "shape": [1], "datatype": "BYTES", "data": [f"{RID}-0"]},
    ],
}
EXAMPLES: dict[type[BaseModel], Any] = {
    Health: {"status": "ok", "checks": {"model": True, "database": True}},
    PredictionPublic: {**PREDICTION, "request_id": RID},
    InferResponse: INFER,
    ModelMetadata: {
        "name": "mnist-default",
        "versions": ["3"],
        "platform": "pytorch_vigil",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
        "outputs": [t.model_dump() for t in outputs.metadata(10)],  # what GET /v2/models/{name} lists
    },
    BatchPredictionPublic: {
        "request_id": RID,
        "results": [
            PREDICTION,
            {
                "status": 415,
                "error": {
                    "code": "not_an_image",
                    "message": "the body is not a recognised image",
                    "request_id": f"{RID}-1",
                },
            },
        ],
    },
    FeedbackReceipt: {"feedback": FEEDBACK, "replaced": False},
    RequestPage: {"items": [ROW], "next_cursor": "aWQ6MUAxNzk2MDQwMDAwMDAw"},  # encode_cursor(1, 2026-11-30T12:00Z): the last item's id, the first page's time
    LoggedRequestDetail: {**ROW, "feedback_history": [FEEDBACK]},
    SummaryPublic: {
        "since": "2026-11-27T10:49:50Z",
        "until": "2026-11-28T10:49:50Z",
        "model": None,
        "requests": 3,
        "errors": 1,
        "decisions": {"accept": 2, "abstain": 0, "reject_ood": 0},
        "hourly": [
            {
                "hour": "2026-11-28T10:00:00Z",
                "requests": 3,
                "predictions": 2,
                "decisions": {"accept": 2, "abstain": 0, "reject_ood": 0},
                "ood_rate": 0.0,
                "abstention_rate": 0.0,
            }
        ],
        "confidence": {
            "edges": EDGES,
            "counts": [0] * (BINS - 1) + [2],
            "reference": [0.0] * 8 + [0.0004, 0.0006, 0.0006, 0.001, 0.0012, 0.0016, 0.9946],
        },
        "ood_score_quantiles": {"p50": -4.44, "p90": -4.44, "p99": -4.44},
        "feedback": {
            "n": 1,
            "accuracy": 1.0,
            "ece": 1.7e-06,
            "accepted": 1,
            "coverage": 1.0,
            "selective_risk": 0.0,
            "reliability": [_bin(i) for i in range(BINS - 1)] + [_bin(BINS - 1, 1, 0.999998, 1.0)],
        },
        "drift": {
            "model": "mnist-default/3",
            "confidence": None,
            "ood_score": None,
            "verdict": "not enough recent predictions of mnist-default/3 (2, need 50) to judge drift",
        },
    },
}


def card_example() -> dict[str, Any]:
    return {
        "name": "mnist-default",
        "version": "3",
        "method": "ensemble",
        "architecture": "small_cnn",
        "class_names": [str(i) for i in range(10)],
        "temperature": 0.9102,
        "failure": {
            "name": "msp",
            "params": {},
            "threshold": 0.4292,
            "criterion": "largest threshold with at most 0.50% errors among accepted validation predictions",
            "target": 0.005,
        },
        "ood": {
            "name": "mahalanobis_layers",
            "params": {"num_classes": 10, "dims": [16, 32, 64, 128], "ridge": 1e-06},
            "threshold": 9.0592,
            "criterion": "99% of in-distribution validation inputs pass",
            "target": 0.99,
        },
        "conformal": {"method": "aps", "alpha": 0.01, "qhat": 0.9937},
        "metrics": {
            "test": {"n": 10000, "after_temperature": {"accuracy": 99.51, "ece": 0.200}}
        },
        "decisions": {"accept": "…", "abstain": "…", "reject_ood": "…"},
        "created_at": "2026-11-28T20:55:24+00:00",
        "training_seconds": 1382.1,
    }


EXAMPLES[ModelCard] = card_example()
