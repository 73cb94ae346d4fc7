"""The shipped default bundle: small, measured, accurate, and served by the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from models.bundle import load_bundle
from service.app import create_app
from service.settings import DEFAULT_MODEL_DIR, Settings
from tests.images import digit_png, noise_png
from training.data import load_mnist


def test_default_bundle_is_small_and_measured() -> None:
    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 20 * 1024 * 1024
    m = load_bundle(DEFAULT_MODEL_DIR).manifest
    test = m.metrics["test"]
    assert test["n"] == 10_000
    assert test["after_temperature"]["accuracy"] >= 99.0
    for stage in ("before_temperature", "after_temperature"):
        assert 0 <= test[stage]["ece"] < 100
    assert m.training_seconds > 0 and m.data_fingerprint


def test_default_model_classifies_real_digits_over_http(data_dir: Path, tmp_path: Path) -> None:
    test = load_mnist(data_dir, train=False)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    n = 100
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post("/v1/predict", content=digit_png(test.x[i]), headers={"content-type": "image/png"}).json()
            for i in range(n)
        ]
        noise = [client.post("/v1/predict", content=noise_png(s), headers={"content-type": "image/png"}).json() for s in range(5)]
    right = sum(a["prediction"]["label"] == int(test.y[i]) for i, a in enumerate(answers))
    assert right >= 98
    # Probabilities to 6 significant digits, never rounded to 0 (a client's log loss stays
    # finite): this model gives real digits classes far below 1e-6.
    probs = np.array([a["probabilities"] for a in answers])
    assert (probs > 0).all() and (probs < 5e-7).any()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert all(float(f"{p:.6g}") == p for p in probs.ravel())
    assert sum(a["decision"] == "accept" for a in answers) >= 90
    # Uniform noise is unlike any digit: the OOD gate must reject it (not merely abstain).
    assert [a["decision"] for a in noise] == ["reject_ood"] * len(noise)
