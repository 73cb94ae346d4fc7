"""The server side of the demo (issue 7): monitor aggregates, static pages, gallery, sample spread."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import text as text_sql

from models.pipeline import PipelineOutput
from service.app import create_app
from service.respond import sample_spread
from service.routes.pages import STATIC_DIR
from service.settings import Settings

GALLERY = STATIC_DIR / "gallery"
PNG = {"content-type": "image/png"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(
            Settings(
                database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True
            )
        )
    ) as c:
        yield c


def monitor_once_written(client: TestClient, n: int) -> dict[str, object]:
    """The monitor feed once the background writer has stored `n` records."""
    deadline = time.monotonic() + 10
    while True:
        body = client.get("/v1/monitor").json()
        if body["requests"] >= n or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_monitor_aggregates_without_revealing_requests(client: TestClient) -> None:
    ids = [
        client.post(
            "/v1/predict", content=(GALLERY / f).read_bytes(), headers=PNG
        ).json()["request_id"]
        for f in ("clear-7.png", "clear-3.png", "noise.png")
    ]
    assert client.post("/v1/predict", content=b"nope", headers=PNG).status_code == 415
    assert (
        client.post(
            f"/v1/requests/{ids[0]}/feedback", json={"label": 7, "note": None}
        ).status_code
        == 201
    )
    body = monitor_once_written(client, 4)
    assert body["requests"] == 4 and body["errors"] == 1
    assert body["decisions"] == {"accept": 2, "abstain": 0, "reject_ood": 1}
    assert body["rates"] == {"accept": pytest.approx(2 / 3), "ood": pytest.approx(1 / 3), "abstain": 0.0}
    assert (
        sum(
            sum(b[k] for k in ("accept", "abstain", "reject_ood", "error"))
            for b in body["timeline"]
        )
        == 4
    )
    conf = body["confidence"]
    assert len(conf["edges"]) == len(conf["live"]) + 1 == len(conf["reference"]) + 1
    assert sum(conf["live"]) == pytest.approx(1) and sum(
        conf["reference"]
    ) == pytest.approx(1)
    rel = body["reliability"]
    assert rel["count"] == 1 and rel["accuracy"] == 1.0
    assert [b["count"] for b in rel["bins"]][-1] == 1
    text = json.dumps(body)
    assert not any(i in text for i in ids) and "client_id" not in text
    # Rows an earlier version of the same model logged (a refit v2 behind the same name) are
    # not the served version's: the feed counts only its own, as it says.
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(text_sql("UPDATE request_log SET model_version = 'older'"))
    assert client.get("/v1/monitor").json()["requests"] == 0


def test_pages_and_monitor_feed_can_be_switched_off(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'log.db'}",
        migrate_on_start=True,
        demo_enabled=False,
    )
    with TestClient(create_app(settings)) as client:
        assert [
            client.get(p).status_code
            for p in ("/", "/monitor", "/v1/monitor", "/static/demo.js")
        ] == [404] * 4


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.parametrize("page", ["/", "/monitor"])
def test_pages_are_offline_csp_safe_and_labelled(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = _Tags()
    parser.feed(r.text)
    tags = parser.tags
    # script-src 'self' and style-src 'self': no inline code, handlers or style attributes.
    assert all(
        a.get("src", "").startswith("/static/") for t, a in tags if t == "script"
    )
    assert not [
        a for _, a in tags if "style" in a or any(k.startswith("on") for k in a)
    ]
    assert "<script>" not in r.text and "<style" not in r.text
    for t, a in tags:
        ref = a.get("src") or (a.get("href") if t == "link" else None)
        if ref and ref.startswith("/static/"):
            assert client.get(ref).status_code == 200, ref
    ids = {a.get("id") for _, a in tags}
    labelled = {a.get("for") for t, a in tags if t == "label"}
    for t, a in tags:
        if t in ("input", "select", "textarea"):
            assert a.get("id") in labelled or a.get("aria-label"), a
        if t == "canvas":
            assert a.get("aria-labelledby") in ids
    assert ("html", {"lang": "en"}) in tags


def test_static_files_fetch_nothing_from_elsewhere() -> None:
    for f in STATIC_DIR.rglob("*"):
        if f.suffix in (".js", ".css", ".html"):
            text = f.read_text()
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f
            assert "@import" not in text and "eval(" not in text, f
            for dep in re.findall(r'from "\./([\w.]+)"', text):
                assert (STATIC_DIR / dep).is_file(), (f, dep)


def test_gallery_examples_get_the_decision_their_caption_promises(
    client: TestClient,
) -> None:
    doc = json.loads((GALLERY / "gallery.json").read_text())
    assert {"MNIST", "Fashion-MNIST"} <= set(doc["credits"])
    expected = {"clear": "accept", "ambiguous": "abstain", "not_a_digit": "reject_ood"}
    assert {i["group"] for i in doc["items"]} == set(expected)
    for item in doc["items"]:
        data = (GALLERY / item["file"]).read_bytes()
        assert len(data) < 5 * 1024
        body = client.post("/v1/predict", content=data, headers=PNG).json()
        assert body["decision"] == expected[item["group"]], item
        if item["group"] == "clear":
            assert body["prediction"]["label"] == item["label"]


def test_sample_spread_is_min_max_and_votes_and_absent_for_one_sample() -> None:
    sp = torch.tensor([[[0.7, 0.3]], [[0.9, 0.1]], [[0.5, 0.5]]])  # [S=3, B=1, K=2]
    out = PipelineOutput(
        sp.mean(0),
        sp,
        torch.zeros(1),
        torch.zeros(1),
        torch.zeros(1),
        torch.zeros(1),
        torch.ones(1, 2, dtype=torch.bool),
    )
    spread = sample_spread(out.row_values()[0])  # predicted label: 0 (mean 0.7 vs 0.3)
    assert spread is not None and spread.count == 3
    assert spread.min == pytest.approx([0.5, 0.1]) and spread.max == pytest.approx(
        [0.9, 0.5]
    )
    assert spread.predicted_class == pytest.approx([0.7, 0.9, 0.5])
    single = PipelineOutput(
        sp[0],
        sp[:1],
        torch.zeros(1),
        torch.zeros(1),
        torch.zeros(1),
        torch.zeros(1),
        torch.ones(1, 2, dtype=torch.bool),
    )
    assert sample_spread(single.row_values()[0]) is None
