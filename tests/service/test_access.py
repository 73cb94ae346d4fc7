"""Who may call what (issue 8): API keys, admin keys, rate limits, what the log keeps, headers, CORS."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import key_digest, key_id
from service.rejections import PREDICT_PATH
from service.settings import Settings
from tests.service import hostile as h
from tests.service.test_bad_inputs import logged

CLIENT, OTHER, LIMITED, STORED, ADMIN = "client-key-1", "client-key-2", "client-key-rl", "client-key-stored", "admin-key-1"
BATCHER, V2, GREEDY = "client-key-batch", "client-key-v2", "client-key-greedy"
PEPPER = "test-pepper"
PNG = h.encode(h.digit(), "PNG")


@pytest.fixture(scope="module")
def locked(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """Keys required, a stored digest among them, a slow rate limit, one CORS origin."""
    url = f"sqlite:///{tmp_path_factory.mktemp('locked') / 'log.db'}"
    keys = [CLIENT, OTHER, LIMITED, BATCHER, V2, GREEDY, "hmac-sha256:" + key_digest(STORED, PEPPER)]
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, require_api_key=True, api_keys=keys, admin_api_keys=[ADMIN],
                 api_key_pepper=PEPPER, rate_limit_per_s=0.2, rate_limit_burst=3, cors_origins=["https://ok.example"], metrics_admin_only=True)  # fmt: skip
    with TestClient(create_app(s)) as c:
        yield c, url


@pytest.fixture(scope="module")
def open_app(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('open') / 'log.db'}"
    with TestClient(create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True))) as c:
        yield c


def post(c: TestClient, key: str | None = None, header: str = "authorization") -> tuple[int, dict]:
    headers = {"content-type": "image/png"}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    r = c.post("/v1/predict", content=PNG, headers=headers)
    return r.status_code, {**r.json(), "_headers": dict(r.headers)}


def test_open_by_default_but_admin_always_needs_a_key(open_app: TestClient) -> None:
    assert post(open_app)[0] == 200
    assert open_app.get("/v1/requests").status_code == 403  # no admin keys configured: admin is off
    assert open_app.get("/metrics").status_code == 200  # metrics are public unless configured
    assert open_app.get("/v1/monitor").status_code == 200  # and so is the monitor's feed


def test_keys_required(locked: tuple[TestClient, str]) -> None:
    c, url = locked
    status, body = post(c)
    assert status == 401 and body["error"]["code"] == "unauthorized" and body["_headers"]["www-authenticate"] == "Bearer"
    row = logged(url, body["error"]["request_id"])
    assert (row.http_status, row.error_code) == (401, "unauthorized") and row.client_id.startswith("ip:")
    assert post(c, "wrong-key")[0] == 401
    status, body = post(c, CLIENT)
    assert status == 200
    row = logged(url, body["request_id"])
    assert row.client_id == key_id(key_digest(CLIENT, PEPPER))  # the key id, never the key or the address
    assert CLIENT not in str(row._asdict()) and "testclient" not in str(row._asdict())
    assert post(c, OTHER, "x-api-key")[0] == 200
    assert post(c, STORED)[0] == 200  # configured only as a digest
    assert post(c, ADMIN)[0] == 200  # an admin key may predict too


def test_every_prediction_route_is_guarded(locked: tuple[TestClient, str]) -> None:
    c, _ = locked
    paths = [p for p, ops in c.get("/openapi.json").json()["paths"].items() if "post" in ops and PREDICT_PATH.match(p.replace("{name}", "tiny"))]
    assert {"/v1/predict", "/v1/predict/batch", "/v2/models/{name}/infer"} <= set(paths)
    for p in [*paths, "/v2/models/tiny/versions/1/infer"]:
        r = c.post(p.replace("{name}", "tiny"), content=b"{}", headers={"content-type": "application/json"})
        assert r.status_code == 401, p


def test_admin_endpoints_need_the_admin_key(locked: tuple[TestClient, str], caplog: pytest.LogCaptureFixture) -> None:
    c, _ = locked
    for path in ("/v1/requests", "/v1/reports/summary", "/metrics", "/v1/monitor"):
        assert c.get(path).status_code == 401, path
        # A client key is known but not allowed here: 403 `forbidden`, not 401 (a retry with it cannot help).
        r = c.get(path, headers={"authorization": f"Bearer {CLIENT}"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), path
        assert c.get(path, headers={"authorization": "Bearer no-such-key"}).status_code == 401, path
    with caplog.at_level(logging.INFO, logger="vigil.auth"):
        assert c.get("/v1/requests", headers={"x-api-key": ADMIN}).status_code == 200
        assert c.get("/v1/monitor", headers={"x-api-key": ADMIN}).json()["requests"] >= 0
    assert key_id(key_digest(ADMIN, PEPPER)) in caplog.text and ADMIN not in caplog.text


def test_rate_limit_per_key(locked: tuple[TestClient, str]) -> None:
    c, url = locked
    assert [post(c, LIMITED)[0] for _ in range(3)] == [200, 200, 200]  # the burst
    status, body = post(c, LIMITED)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(body["_headers"]["retry-after"]) >= 1
    assert logged(url, body["error"]["request_id"]).error_code == "rate_limited"
    assert post(c, OTHER)[0] == 200  # another key has its own bucket


def test_a_request_of_n_images_costs_n_tokens(locked: tuple[TestClient, str]) -> None:
    c, url = locked
    batch = {"files": [("images", (f"{i}.png", PNG, "image/png")) for i in range(3)]}
    assert c.post("/v1/predict/batch", headers={"x-api-key": BATCHER}, **batch).status_code == 200  # the whole burst
    assert post(c, BATCHER)[0] == 429
    pixels = {"name": "input", "shape": [4, 1, 28, 28], "datatype": "FP32", "data": [0.0] * (4 * 784)}
    r = c.post("/v2/models/tiny/infer", json={"inputs": [pixels]}, headers={"x-api-key": V2})
    assert r.status_code == 200  # 4 > the burst of 3: granted on a full bucket, leaving a debt
    status, body = post(c, V2)
    assert status == 429 and int(body["_headers"]["retry-after"]) >= 10  # (1 + the debt of 1) at 0.2/s
    assert post(c, GREEDY)[0] == 200
    r = c.post("/v1/predict/batch", headers={"x-api-key": GREEDY}, **batch)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited" and "3 in this request" in r.json()["error"]["message"]
    assert logged(url, r.json()["error"]["request_id"]).error_code == "rate_limited"


def test_security_headers(open_app: TestClient) -> None:
    for path in ("/", "/monitor", "/static/demo.js", "/healthz", "/v1/models"):
        r = open_app.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp and "frame-ancestors 'none'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in open_app.get("/docs").headers["content-security-policy"]
    assert open_app.post("/v1/predict", content=b"").headers["x-content-type-options"] == "nosniff"  # errors too


def test_demo_pages_have_no_inline_script(open_app: TestClient) -> None:
    import re

    for path in ("/", "/monitor"):
        html = open_app.get(path).text
        for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.DOTALL | re.IGNORECASE):
            assert tag.strip() == "", f"{path}: inline script"
        assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE), f"{path}: inline event handler"


def test_cors_closed_by_default_and_configurable(open_app: TestClient, locked: tuple[TestClient, str]) -> None:
    pre = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    assert "access-control-allow-origin" not in open_app.options("/v1/predict", headers=pre).headers
    assert "access-control-allow-origin" not in open_app.get("/v1/models", headers={"origin": "https://evil.example"}).headers
    c, _ = locked
    ok = c.options("/v1/predict", headers={**pre, "origin": "https://ok.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ok.example"
    refused = c.options("/v1/predict", headers=pre)
    assert "access-control-allow-origin" not in refused.headers
    # Refused in the one error shape, as every 4xx (Starlette's own is text/plain).
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "cors_refused" and "Disallowed CORS origin (VIGIL_CORS_ORIGINS lists" in error["message"]
    assert error["request_id"] == refused.headers["x-vigil-request-id"]  # was null: nothing to quote
    # Each refused part gets its own hint, not the origin list's.
    method = c.options("/v1/predict", headers={**pre, "origin": "https://ok.example", "access-control-request-method": "DELETE"})
    assert method.status_code == 400 and method.json()["error"]["message"] == "Disallowed CORS method (this service answers GET, POST from other origins)"
    header = c.options("/v1/predict", headers={**pre, "origin": "https://ok.example", "access-control-request-headers": "x-custom"})
    message = header.json()["error"]["message"]
    assert message.startswith("Disallowed CORS headers (a request from another origin may send these headers: ") and "x-api-key" in message
    assert "VIGIL_CORS_ORIGINS" not in message and header.json()["error"]["request_id"] == header.headers["x-vigil-request-id"]
    v2 = c.options("/v2/models/x/infer", headers=pre).json()  # the OIP shape on /v2, with the id too
    assert v2["code"] == "cors_refused" and v2["request_id"] is not None


def test_production_refuses_default_secrets_and_keyless_lockdown() -> None:
    with pytest.raises(ValueError, match="VIGIL_API_KEY_PEPPER"):
        Settings(environment="production", client_id_salt="s3cret")
    # deploy/env.example's placeholders, copied as they are, are no secrets either.
    example = dict(line.split("=", 1) for line in (Path(__file__).parents[2] / "deploy" / "env.example").read_text().splitlines() if line.startswith("VIGIL_"))
    with pytest.raises(ValueError, match="VIGIL_CLIENT_ID_SALT .*placeholder"):
        Settings(environment="production", client_id_salt=example["VIGIL_CLIENT_ID_SALT"], api_key_pepper="p3pper")
    with pytest.raises(ValueError, match="VIGIL_API_KEY_PEPPER .*placeholder"):
        Settings(environment="production", client_id_salt="s3cret", api_key_pepper=example["VIGIL_API_KEY_PEPPER"])
    assert Settings(environment="production", client_id_salt="s3cret", api_key_pepper="p3pper").environment == "production"
    # Both database passwords of env.example, copied into the URLs compose builds from them.
    every = dict(line.split("=", 1) for line in (Path(__file__).parents[2] / "deploy" / "env.example").read_text().splitlines() if "=" in line and not line.startswith("#"))
    for name in ("POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD"):
        url = f"postgresql+psycopg://vigil_app:{every[name]}@postgres:5432/vigil"
        with pytest.raises(ValueError, match="database password .*placeholder"):
            Settings(environment="production", client_id_salt="s3cret", api_key_pepper="p3pper", database_url=url)
        assert Settings(client_id_salt="s3cret", api_key_pepper="p3pper", database_url=url).database_url == url  # development: allowed
    with pytest.raises(ValueError, match="database password .*empty"):
        Settings(environment="production", client_id_salt="s3cret", api_key_pepper="p3pper", database_url="postgresql+psycopg://vigil_app:@postgres/vigil")
    with pytest.raises(ValueError, match="VIGIL_API_KEY_PEPPER"):  # an empty variable overrides a secret file: no secret
        Settings(environment="production", client_id_salt="s3cret", api_key_pepper="")
    good = "postgresql+psycopg://vigil_app:a1b2c3@postgres:5432/vigil"
    assert Settings(environment="production", client_id_salt="s3cret", api_key_pepper="p3pper", database_url=good).database_url == good
    with pytest.raises(ValueError, match="no keys are configured"):
        Settings(require_api_key=True)
    with pytest.raises(ValueError, match="64 hex digits"):
        create_app(Settings(api_keys=["hmac-sha256:short"]))


def test_an_ipv6_client_has_one_bucket_for_its_whole_64(tiny_bundle: Path, tmp_path: Path) -> None:
    """One subscriber holds a /64: a fresh address per request must not buy a fresh burst."""
    from service.ratelimit import network_of

    assert network_of("2001:db8:1:2:aaaa::1") == network_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert network_of("2001:db8:1:3::1") != network_of("2001:db8:1:2::1")  # the neighbouring /64
    assert network_of("::ffff:192.0.2.7") == "192.0.2.7" and network_of("192.0.2.7") == "192.0.2.7"
    assert network_of("testclient") == "testclient"
    # Addresses that carry an IPv4 client's: one bucket per IPv4 client, not one for all of them.
    assert network_of("64:ff9b::192.0.2.1") == "192.0.2.1" != network_of("64:ff9b::198.51.100.7")  # NAT64
    assert network_of("::ffff:0:192.0.2.1") == "192.0.2.1"  # SIIT
    assert network_of("2002:c000:204::1") == "192.0.2.4"  # 6to4
    assert network_of("2001:0:4136:e378:8000:63bf:3fff:fdd2") == "192.0.2.45"  # Teredo's client
    assert network_of("fe80::1%eth0") != network_of("fe80::1%eth1") and network_of("fe80::1%eth0") != network_of("fe80::2%eth0")
    url = f"sqlite:///{tmp_path / 'log.db'}"
    app = create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, rate_limit_per_s=0.2, rate_limit_burst=2))
    statuses = []
    with TestClient(app) as c:
        for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:9::3", "2001:db8:1:3::1"):
            c._transport.client = (host, 50000)  # type: ignore[attr-defined]  # the ASGI scope's client address
            statuses.append(post(c)[0])
    assert statuses == [200, 200, 429, 200]  # the burst of 2 is the /64's; the next /64 has its own


def test_secrets_come_from_files_in_vigil_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker's or Kubernetes' secrets mounted as files, one per setting; the environment wins."""
    from models.usage import UsageError

    (tmp_path / "vigil_api_key_pepper").write_text("pepper-from-a-file\n")  # as `echo` writes it
    (tmp_path / "vigil_database_url").write_text("postgresql+psycopg://vigil_app:s3cret@db/vigil")
    monkeypatch.setenv("VIGIL_SECRETS_DIR", str(tmp_path))
    s = Settings()
    assert (s.api_key_pepper, s.database_url) == ("pepper-from-a-file", "postgresql+psycopg://vigil_app:s3cret@db/vigil")
    monkeypatch.setenv("VIGIL_DATABASE_URL", "sqlite:///from-the-environment.db")
    assert Settings().database_url == "sqlite:///from-the-environment.db"
    monkeypatch.delenv("VIGIL_SECRETS_DIR")
    assert Settings().api_key_pepper == "vigil-dev-pepper"  # no folder named: no files read
    monkeypatch.setenv("VIGIL_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="is not a folder"):
        Settings()


@pytest.mark.parametrize("keys", [{"api_keys": [CLIENT]}, {"admin_api_keys": [ADMIN]}, {}], ids=["client-keys", "admin-keys", "no-keys"])
def test_a_wrong_key_is_refused_wherever_the_docs_list_the_key_schemes(tiny_bundle: Path, tmp_path: Path, keys: dict[str, list[str]]) -> None:
    """Keys not required: every operation whose OpenAPI lists the key schemes refuses a key that
    matches none configured (401, as its docs say), /metrics and /v1/monitor as the predict
    endpoints do (they served it); operations that do not list them ignore it. With no keys
    configured at all, there is nothing to check a key against: it is ignored."""
    s = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, **keys)
    wrong = {"x-api-key": "no-such-key", "content-type": "application/json"}
    with TestClient(create_app(s)) as c:
        name = c.get("/v1/models").json()[0]["name"]
        checked = set()
        for path, ops in c.get("/openapi.json").json()["paths"].items():
            for method, op in ops.items():
                url = path.replace("{name}", name).replace("{request_id}", "abc")
                r = c.request(method, url, headers=wrong, content=b"{}" if method == "post" else None)
                if "security" not in op:
                    assert r.status_code not in (401, 403), (method, path, r.text)
                elif {} not in op["security"]:  # an admin endpoint: refused, 403 while no admin key exists
                    assert r.status_code == (401 if s.admin_api_keys else 403), (method, path, r.text)
                elif keys:
                    assert r.status_code == 401 and "this API key is not valid" in r.text, (method, path, r.text)
                    assert "this API key is not valid" in op["responses"]["401"]["description"], (method, path)
                    checked.add(path)
                else:
                    assert r.status_code != 401, (method, path, r.text)
    assert keys == {} or {"/v1/predict", "/v1/predict/batch", "/v1/requests/{request_id}/feedback", "/v2/models/{name}/infer", "/metrics", "/v1/monitor"} <= checked
