"""POST /v1/predict/batch: results in order, equal to single predictions, one log row per image."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from service.settings import Settings
from tests.images import noise_png


def logged(url: str) -> list[RequestRecord]:
    engine = make_engine(url)
    with engine.connect() as conn:
        out = list(conn.execute(select(RequestRecord).order_by(RequestRecord.id)))
    engine.dispose()
    return out


@pytest.fixture
def settings(tiny_bundle: Path, tmp_path: Path) -> Settings:
    return Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, max_batch_images=4)


def test_batch_answers_each_image_in_order_and_logs_each(settings: Settings) -> None:
    pngs = [noise_png(1), noise_png(2), b"not an image", noise_png(3)]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/predict/batch", files=[("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)])
        singles = [client.post("/v1/predict", content=p, headers={"content-type": "image/png"}).json() for p in pngs[:2]]
        assert "/v1/predict/batch" in client.get("/openapi.json").json()["paths"]
    assert r.status_code == 200, r.text
    body = r.json()
    rid = body["request_id"]
    assert rid == r.headers["x-request-id"]
    results = body["results"]
    assert [x.get("request_id", x.get("error", {}).get("request_id")) for x in results] == [f"{rid}-{i}" for i in range(4)]
    for got, one in zip(results[:2], singles, strict=True):
        assert got["probabilities"] == pytest.approx(one["probabilities"], abs=1e-5)
        assert got["ood"]["score"] == pytest.approx(one["ood"]["score"], rel=1e-4)
        assert got["decision"] == one["decision"]
    assert results[2] == {"status": 415, "error": {"code": "not_an_image", "message": results[2]["error"]["message"], "request_id": f"{rid}-2"}}
    assert "probabilities" in results[3]

    rows = [x for x in logged(settings.database_url) if x.endpoint == "/v1/predict/batch"]
    assert [x.request_id for x in rows] == [f"{rid}-{i}" for i in range(4)]
    assert [x.http_status for x in rows] == [200, 200, 415, 200]
    assert rows[0].probabilities == pytest.approx(results[0]["probabilities"])
    assert rows[2].error_code == "not_an_image" and rows[2].input_sha256 is not None


def test_batch_over_the_limit_is_413(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/predict/batch", files=[("images", (f"{i}.png", noise_png(i), "image/png")) for i in range(5)])
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["code"] == "too_many_images" and "4" in err["message"] and err["request_id"] == r.headers["x-request-id"]
    (row,) = logged(settings.database_url)
    assert (row.request_id, row.http_status, row.error_code) == (err["request_id"], 413, "too_many_images")


def test_an_image_over_the_single_image_limit_is_refused_in_its_slot(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_upload_bytes": 4096})
    big = noise_png(7, 100)  # ~10 kB of noise: over the 4 kB single-image limit, under the batch's
    assert len(big) > 4096
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/predict/batch", files=[("images", ("a.png", noise_png(1), "image/png")), ("images", ("b.png", big, "image/png"))])
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert "probabilities" in first
    assert second["status"] == 413 and second["error"]["code"] == "payload_too_large" and "4096" in second["error"]["message"]
    rows = logged(settings.database_url)
    assert [(x.http_status, x.error_code) for x in rows] == [(200, None), (413, "payload_too_large")]


def test_a_batch_cut_off_before_its_closing_boundary_loses_no_image_silently(settings: Settings) -> None:
    part = b'--xx\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n%s\r\n'
    whole = b"".join(part % noise_png(i) for i in range(3))
    ctype = {"content-type": "multipart/form-data; boundary=xx"}
    with TestClient(create_app(settings)) as client:
        ok = client.post("/v1/predict/batch", content=whole + b"--xx--\r\n", headers=ctype)
        cut = client.post("/v1/predict/batch", content=whole[:-200], headers=ctype)  # the third part cut short
        unclosed = client.post("/v1/predict/batch", content=whole, headers=ctype)  # every part whole, no close delimiter
    assert ok.status_code == 200 and len(ok.json()["results"]) == 3, ok.text
    for r in (cut, unclosed):
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "malformed_multipart" and "closing boundary" in r.json()["error"]["message"]


def test_a_text_part_among_the_images_is_refused_not_skipped(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/predict/batch", files=[("images", ("a.png", noise_png(1), "image/png"))], data={"images": "hello"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "not_a_file"


def test_each_way_an_image_is_refused_in_its_slot_is_documented(settings: Settings) -> None:
    """The description of `{status, error}` names every refusal an item gets, not only "could
    not be decoded": an empty part, one over the single-image limit, bytes that are no image."""
    settings = settings.model_copy(update={"max_upload_bytes": 4096})
    parts = [b"", b"not an image", noise_png(7, 100), noise_png(1)[:-30]]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/predict/batch", files=[("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(parts)])
        documented = client.get("/openapi.json").json()["paths"]["/v1/predict/batch"]["post"]["description"]
    assert r.status_code == 200, r.text
    refused = [(x["status"], x["error"]["code"]) for x in r.json()["results"]]
    assert refused == [(400, "empty_body"), (415, "not_an_image"), (413, "payload_too_large"), (422, "corrupt_image")]
    assert [f"{status} `{code}`" in documented for status, code in refused] == [True] * 4, documented
