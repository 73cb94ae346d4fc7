"""`vigil replay`: logged inputs answered again, as an audit and as a what-if for another model."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.app import create_app
from service.cli import main as vigil
from service.db.engine import make_engine
from service.settings import Settings
from tests.images import digit_png, noise_png
from training.data import load_mnist


@pytest.fixture(scope="module")
def mc_bundle(tiny_bundle: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MC dropout on the tiny network: a sampled model, whose answers used to vary by call."""
    out = tmp_path_factory.mktemp("bundles") / "mc"
    args = ["train", "--method", "mc_dropout", "--base-bundle", str(tiny_bundle), "--data-dir", str(data_dir), "--out", str(out)]
    args += ["--train-size", "800", "--val-size", "1000", "--skip-test", "--quiet", "--name", "tiny-mc", "--samples", "8"]
    assert vigil(args) == 0
    return out


def serve_and_log(url: str, mc_bundle: Path, data_dir: Path) -> str:
    """A request log of MC-dropout answers with their inputs: 5 alone, 4 in one batch, 2 in one
    Open Inference Protocol call, 1 refused."""
    settings = Settings(model_dir=mc_bundle, database_url=url, migrate_on_start=True, log_store_inputs=True)
    test_digits = load_mnist(data_dir, train=False).x
    digits = [digit_png(x) for x in test_digits[:9]]
    with TestClient(create_app(settings)) as client:
        for png in [*digits[:4], noise_png(3)]:
            assert client.post("/v1/predict", content=png, headers={"content-type": "image/png"}).status_code == 200
        files = [("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(digits[4:8])]
        assert client.post("/v1/predict/batch", files=files).status_code == 200
        pair = test_digits[10:12]  # [2, 1, 28, 28] in [0, 1], as the protocol takes them
        body = {"inputs": [{"name": "input", "shape": list(pair.shape), "datatype": "FP32", "data": pair.flatten().tolist()}]}
        assert client.post("/v2/models/tiny-mc/infer", json=body).status_code == 200
        assert client.post("/v1/predict", content=b"not an image", headers={"content-type": "image/png"}).status_code == 415
    return url


@pytest.fixture(scope="module")
def logged(mc_bundle: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return serve_and_log(f"sqlite:///{tmp_path_factory.mktemp('replay') / 'log.db'}", mc_bundle, data_dir)


def edited_copy(bundle: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of `bundle` whose manifest `edit` changed in place (the weights, and their checksum, kept)."""
    out = tmp_path / "edited"
    shutil.copytree(bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_the_bundle_that_logged_the_answers_gives_them_again(
    db_url: str, mc_bundle: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logged = serve_and_log(db_url, mc_bundle, data_dir)  # on both backends: rows are streamed
    assert vigil(["replay", "--url", logged, "--bundle", str(mc_bundle)]) == 0
    out = capsys.readouterr().out
    assert "replayed 11 logged answers with tiny-mc v1" in out  # the refused upload has no answer
    assert "logged by tiny-mc v1 (audit: the bundle that logged them): same answer: 11; different: 0" in out
    assert "decisions that change" not in out and "AUDIT FAILED" not in out
    assert vigil(["replay", "--url", logged, "--bundle", str(mc_bundle), "--limit", "3"]) == 0
    assert "same answer: 3; different: 0" in capsys.readouterr().out
    # The window selects rows by when they were received: all of them within the last day,
    # none before 2000 or from a day ahead on.
    assert vigil(["replay", "--url", logged, "--bundle", str(mc_bundle), "--since", "24h"]) == 0
    assert "same answer: 11; different: 0" in capsys.readouterr().out
    ahead, later = ((dt.datetime.now(dt.UTC) + dt.timedelta(days=d)).strftime("%Y-%m-%dT%H:%M") for d in (1, 2))
    for window in (["--until", "2000-01-01T00:00"], ["--since", ahead, "--until", later]):
        assert vigil(["replay", "--url", logged, "--bundle", str(mc_bundle), *window]) == 3, window
    # A --since ahead of now with no --until is a typo, refused as `report` refuses it.
    assert vigil(["replay", "--url", logged, "--bundle", str(mc_bundle), "--since", ahead]) == 2
    assert "--since must be before --until (default: now)" in capsys.readouterr().err


def test_a_bundle_changed_under_the_same_name_and_version_fails_the_audit(
    logged: str, mc_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Same weights (their checksum still holds), another seed in the manifest: other masks.
    edited = edited_copy(mc_bundle, tmp_path, lambda m: m["method_params"].update(seed=12345))
    assert vigil(["replay", "--url", logged, "--bundle", str(edited)]) == 1
    out = capsys.readouterr().out
    assert "same answer: 0; different: 11" in out
    assert "probabilities 11" in out and "AUDIT FAILED: rows logged by tiny-mc v1 are not answered so" in out


def test_another_model_is_a_what_if_on_the_logged_traffic(
    logged: str, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The deterministic network under its own name: rows are picked by --model, and answers that
    # differ are the point of the comparison, not an audit failure.
    assert vigil(["replay", "--url", logged, "--bundle", str(tiny_bundle)]) == 3  # an audit of nothing is no pass
    assert "nothing to replay: no successful prediction of model 'tiny' (another: --model NAME" in capsys.readouterr().out  # the filter named
    assert vigil(["replay", "--url", logged, "--bundle", str(tiny_bundle), "--model", "tiny-mc"]) == 0
    out = capsys.readouterr().out
    assert "replayed 11 logged answers with tiny v1" in out
    assert "logged by tiny-mc v1 (what-if: another model): same answer: 0; different: 11" in out
    assert "AUDIT FAILED" not in out


def test_bad_options_are_refused(logged: str, mc_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil(["replay", "--url", logged, "--bundle", str(mc_bundle), "--since", "2026-11-30T13:00", "--until", "2026-11-30T12:00"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        vigil(["replay", "--model", "a", "--all-models"])


def test_scores_of_another_method_are_not_compared_their_methods_are(
    logged: str, mc_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def to_entropy(manifest: dict[str, Any]) -> None:
        assert manifest["failure"]["name"] == "msp"
        manifest["failure"].update(name="entropy", params={})

    edited = edited_copy(mc_bundle, tmp_path, to_entropy)
    assert vigil(["replay", "--url", logged, "--bundle", str(edited)]) == 1
    fields = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  fields that differ"))
    assert "failure_method 11" in fields and "failure_score" not in fields and "probabilities" not in fields


def _log_copy(logged: str, tmp_path: Path, *statements: str, params: dict[str, Any] | None = None) -> str:
    """A copy of the SQLite log with `statements` applied (the rows' hash chain is not the point here)."""
    copy = tmp_path / "copy.db"
    shutil.copy(logged.removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    engine = make_engine(url)
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql), params or {})
    engine.dispose()
    return url


def test_rows_of_an_older_version_do_not_hide_a_failed_audit(
    logged: str, mc_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # After an upgrade the log holds both versions under one name: the audit is of the rows the
    # bundle's own version logged, whatever else was selected.
    url = _log_copy(logged, tmp_path, "UPDATE request_log SET model_version = '0' WHERE id % 2 = 0")
    assert vigil(["replay", "--url", url, "--bundle", str(mc_bundle)]) == 0
    out = capsys.readouterr().out
    assert "logged by tiny-mc v0 (what-if: another model)" in out and "logged by tiny-mc v1 (audit" in out
    edited = edited_copy(mc_bundle, tmp_path, lambda m: m["method_params"].update(seed=12345))
    assert vigil(["replay", "--url", url, "--bundle", str(edited)]) == 1
    assert "AUDIT FAILED: rows logged by tiny-mc v1" in capsys.readouterr().out


def test_stored_inputs_the_bundle_cannot_take_are_named_and_fail_the_audit(
    logged: str, mc_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = io.BytesIO()
    np.save(wrong, np.zeros((1, 32, 32), np.float32), allow_pickle=False)
    url = _log_copy(
        logged,
        tmp_path,
        "UPDATE request_log SET input_pixels = :empty WHERE id = (SELECT MIN(id) FROM request_log WHERE input_pixels IS NOT NULL)",
        "UPDATE request_log SET input_pixels = :wrong WHERE id = (SELECT MAX(id) FROM request_log WHERE input_pixels IS NOT NULL)",
        params={"empty": b"", "wrong": wrong.getvalue()},
    )
    assert vigil(["replay", "--url", url, "--bundle", str(mc_bundle)]) == 1
    out = capsys.readouterr().out
    assert "same answer: 9; different: 0" in out and "inputs that cannot be replayed: 2" in out
    assert "not an .npy array (EOFError)" in out and "shape (1, 32, 32), the bundle takes (1, 28, 28)" in out
    assert "AUDIT FAILED" in out
