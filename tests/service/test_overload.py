"""Under a burst the service sheds load with 503 + Retry-After, never a 500, and recovers at once.

A short smoke version of benchmarks/stress.py (which runs 30 s at twice the
sustainable rate against a real server): 48 concurrent requests into an app that
admits 3 at a time and queues 2 for inference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.metrics import SHEDDING_CODES
from service.settings import Settings
from tests.service import hostile as h
from tests.service.test_bad_inputs import logged

PNG = h.encode(h.digit(), "PNG")


def test_burst_is_shed_with_503_and_the_service_recovers(tiny_bundle: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, max_inflight=3, inference_queue_size=2, batch_max_wait_ms=20)
    with TestClient(create_app(s)) as client:

        async def burst(n: int) -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                post = lambda: c.post("/v1/predict", content=PNG, headers={"content-type": "image/png"})
                return list(await asyncio.gather(*(post() for _ in range(n))))

        assert client.portal is not None
        answers = client.portal.call(burst, 48)
        statuses = Counter(r.status_code for r in answers)
        assert set(statuses) <= {200, 503} and statuses[200] >= 1 and statuses[503] >= 1, statuses
        shed = [r for r in answers if r.status_code == 503]
        assert {r.json()["error"]["code"] for r in shed} <= {"overloaded", "inference_backpressure"}
        assert all(r.headers["retry-after"] == "1" for r in shed)
        assert client.app.state.inflight.current == 0  # every admitted request left the gauge
        assert client.post("/v1/predict", content=PNG, headers={"content-type": "image/png"}).status_code == 200
        err = shed[0].json()["error"]
        assert logged(url, err["request_id"]).error_code == err["code"]
        # Each code a caller meets here is one the docs name, on every prediction route.
        paths = client.get("/openapi.json").json()["paths"]
        for path in ("/v1/predict", "/v1/predict/batch", "/v2/models/{name}/infer"):
            documented = paths[path]["post"]["responses"]["503"]["description"]
            assert all(f"`{code}`" in documented for code in error_codes(shed)), (path, documented)
            # ...and every 503 load-shedding code /metrics counts, met in this burst or not.
            assert all(f"`{code}`" in documented for code in set(SHEDDING_CODES) - {"rate_limited"}), (path, documented)


def error_codes(answers: list[httpx.Response]) -> set[str]:
    return {r.json()["error"]["code"] for r in answers}


def test_an_upload_that_goes_quiet_gives_its_slot_back(tiny_bundle: Path, tmp_path: Path) -> None:
    """Headers and a few bytes, then silence: 408 body_timeout, logged, and its in-flight slot
    free again (64 such connections refused every other prediction while they stayed open)."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, max_inflight=1, body_idle_timeout_s=0.5)
    with TestClient(create_app(s)) as client:

        async def quiet_then_real() -> tuple[httpx.Response, httpx.Response]:
            async def stalls() -> AsyncIterator[bytes]:
                yield PNG[:3]
                await asyncio.sleep(30)  # never sends the rest
                yield PNG[3:]

            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                stalled = c.post("/v1/predict", content=stalls(), headers={"content-type": "image/png", "content-length": str(len(PNG))})
                return await asyncio.wait_for(stalled, 10), await c.post("/v1/predict", content=PNG, headers={"content-type": "image/png"})

        assert client.portal is not None
        stalled, after = client.portal.call(quiet_then_real)
        assert (stalled.status_code, stalled.json()["error"]["code"]) == (408, "body_timeout"), stalled.text
        assert after.status_code == 200 and client.app.state.inflight.current == 0
        err = stalled.json()["error"]
        assert logged(url, err["request_id"]).error_code == "body_timeout"


def test_one_client_holds_at_most_its_share_of_the_slots(tiny_bundle: Path, tmp_path: Path) -> None:
    """A slot is taken before the body arrives: clients that send headers, wait for the 408 and
    reconnect held every slot (45 of 45 predictions refused). With a per-client limit one
    client's quiet uploads leave the other slots to others."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, max_inflight=4, max_inflight_per_client=1, body_idle_timeout_s=2)
    with TestClient(create_app(s)) as client:

        async def quiet_then_others() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            async def stalls() -> AsyncIterator[bytes]:
                yield PNG[:3]
                await asyncio.sleep(30)
                yield PNG[3:]

            def from_(host: str) -> httpx.AsyncClient:
                return httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app, client=(host, 5000)), base_url="http://testserver")

            async with from_("203.0.113.7") as attacker, from_("198.51.100.2") as other:
                headers = {"content-type": "image/png", "content-length": str(len(PNG))}
                stalled = asyncio.ensure_future(attacker.post("/v1/predict", content=stalls(), headers=headers))
                await asyncio.sleep(0.3)  # its slot is taken
                second = await attacker.post("/v1/predict", content=PNG, headers={"content-type": "image/png"})
                others = await other.post("/v1/predict", content=PNG, headers={"content-type": "image/png"})
                return await asyncio.wait_for(stalled, 10), second, others

        assert client.portal is not None
        stalled, second, others = client.portal.call(quiet_then_others)
        assert (second.status_code, second.json()["error"]["code"]) == (503, "overloaded") and "VIGIL_MAX_INFLIGHT_PER_CLIENT" in second.json()["error"]["message"]
        assert others.status_code == 200 and stalled.status_code == 408
        assert client.app.state.inflight.current == 0 and client.app.state.inflight.by_client == {}


def test_an_upload_that_trickles_is_refused_once_it_falls_below_the_minimum_rate(tiny_bundle: Path, tmp_path: Path) -> None:
    """A byte every few seconds kept clear of the idle timeout and held a slot for as long: past
    its first VIGIL_BODY_IDLE_TIMEOUT_S a body must arrive at VIGIL_BODY_MIN_RATE_BPS on average."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, body_idle_timeout_s=0.6, body_min_rate_bps=100)
    with TestClient(create_app(s)) as client:

        async def trickle(pause: float) -> httpx.Response:
            async def slowly() -> AsyncIterator[bytes]:
                for i in range(0, len(PNG), 10):  # 10 bytes every `pause` s, never idle for 0.6 s
                    yield PNG[i : i + 10]
                    await asyncio.sleep(pause)

            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                sent = c.post("/v1/predict", content=slowly(), headers={"content-type": "image/png", "content-length": str(len(PNG))})
                return await asyncio.wait_for(sent, 20)

        assert client.portal is not None
        started = time.monotonic()
        slow = client.portal.call(trickle, 0.4)  # 25 bytes/s
        assert (slow.status_code, slow.json()["error"]["code"]) == (408, "body_timeout"), slow.text
        assert "slower than 100 bytes/s" in slow.json()["error"]["message"] and time.monotonic() - started < 5
        assert logged(url, slow.json()["error"]["request_id"]).error_code == "body_timeout"
        assert client.portal.call(trickle, 0.01).status_code == 200  # 1,000 bytes/s: fast enough


def test_a_feedback_body_that_goes_quiet_is_refused_408(tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Feedback's JSON body is read with the uploads' idle timeout: a client that sends the
    headers and part of the body, then nothing, gets 408 `body_timeout` (it waited for ever)."""
    s = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, body_idle_timeout_s=0.5)
    with TestClient(create_app(s)) as client:

        async def quiet() -> httpx.Response:
            async def stalls() -> AsyncIterator[bytes]:
                yield b'{"la'
                await asyncio.sleep(30)  # never sends the rest
                yield b'bel": 1}'

            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                headers = {"content-type": "application/json", "content-length": "1000"}
                return await asyncio.wait_for(c.post("/v1/requests/abc/feedback", content=stalls(), headers=headers), 10)

        assert client.portal is not None
        with caplog.at_level(logging.INFO, logger="vigil.access"):
            stalled = client.portal.call(quiet)
        err = stalled.json()["error"]
        assert (stalled.status_code, err["code"]) == (408, "body_timeout"), stalled.text
        assert err["message"] == "no part of the request body arrived for 0.5 s (VIGIL_BODY_IDLE_TIMEOUT_S)"  # as predict words it
        # In the access log and /metrics like any answer (feedback has no request-log row of its own).
        assert any(getattr(r, "request_id", None) == err["request_id"] and getattr(r, "status", None) == 408 for r in caplog.records)
        assert 'route="/v1/requests/{request_id}/feedback",status="408"' in client.get("/metrics").text
