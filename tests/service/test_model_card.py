"""GET /v1/models/{name}: method, scorers, thresholds, validation metrics, decisions in plain words."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from models.bundle import MANIFEST, read_manifest
from service.app import create_app
from service.card_text import prediction_set_text
from service.policy import MEANINGS
from service.settings import Settings
from tests.images import digit_png
from training.data import load_mnist


def test_model_card_says_what_is_served_and_what_decisions_mean(tiny_bundle: Path, tmp_path: Path) -> None:
    m = read_manifest(tiny_bundle)
    settings = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    with TestClient(create_app(settings)) as client:
        card = client.get(f"/v1/models/{m.name}").json()
    assert card["method"] == m.method == "deterministic"
    for role in ("failure", "ood"):
        spec = getattr(m, role)
        assert (card[role]["name"], card[role]["threshold"], card[role]["params"]) == (spec.name, spec.threshold, spec.params)
        assert card[role]["criterion"] and "Higher means" in card[role]["meaning"]
    assert card["ood"]["name"] == "mahalanobis_layers" and "every layer" in card["ood"]["meaning"]  # the `auto` choice
    assert card["metrics"]["validation"]["ood_pass_rate"] > 0.98 and "coverage" in card["metrics"]["validation"]
    assert card["metrics"]["ood_fit"]["auto_chosen"] == "mahalanobis_layers"
    assert set(card["decisions"]) == set(MEANINGS)
    for decision, text in card["decisions"].items():
        assert text.startswith(MEANINGS[decision])
    exceed = 1 - m.metrics["validation"]["ood_pass_rate"]  # measured on the validation digits the scorer was not fitted on
    assert 0 < exceed <= 0.01 and f"which only {exceed:.1%} of validation digits exceed" in card["decisions"]["reject_ood"]
    assert f"{m.ood.threshold:.4g}" in card["decisions"]["reject_ood"]
    assert f"{m.failure.threshold:.4g}" in card["decisions"]["abstain"]
    # In words an audience reads, with the scorer's name an engineer looks up.
    assert "the distance from the training digits (mahalanobis_layers) is above" in card["decisions"]["reject_ood"]
    assert f"but the doubt (msp) is above {m.failure.threshold:.4g}" in card["decisions"]["abstain"]
    assert card["conformal"]["alpha"] == m.conformal.alpha and "99%" in card["conformal"]["meaning"]
    # The training options the thresholds were fitted for, as numbers (the CLI's defaults here).
    assert (card["failure"]["target"], card["ood"]["target"]) == (0.005, 0.99)


def test_an_infinite_conformal_quantile_is_served_and_described(tiny_bundle: Path, data_dir: Path, tmp_path: Path) -> None:
    # Calibrated on too few images for 1 - alpha, the quantile is +inf: every class is in
    # every set, and the card (JSON has no infinity) says "Infinity" instead of failing.
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    m = read_manifest(bundle)
    m.conformal.qhat = math.inf
    (bundle / MANIFEST).write_text(m.model_dump_json(indent=2))
    settings = Settings(model_dir=bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    x = load_mnist(data_dir, train=False).x[:1]
    with TestClient(create_app(settings)) as client:
        card = client.get(f"/v1/models/{m.name}")
        body = client.post("/v1/predict", content=digit_png(x[0]), headers={"content-type": "image/png"}).json()
    assert card.status_code == 200 and card.json()["conformal"]["qhat"] == "Infinity"
    assert "lists every class" in card.json()["conformal"]["meaning"]
    assert sorted(body["prediction_set"]) == list(range(len(m.class_names)))


def test_the_coverage_in_words_is_not_rounded(tiny_bundle: Path) -> None:
    m = read_manifest(tiny_bundle)
    m.conformal.alpha = 0.005
    assert "at least 99.5% of in-distribution images" in prediction_set_text(m)
