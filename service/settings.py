"""Service settings from `VIGIL_` environment variables (pydantic-settings).

Built once by the CLI or a test and passed to `create_app`; no module reads the
environment itself, and nothing is built at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

import models
from models.usage import UsageError
from service.db.chain import NAME_MAX

#: The bundle shipped in the repository (trained by `make default-model`).
DEFAULT_MODEL_DIR = Path(models.__file__).resolve().parent / "bundles" / "default"


def _placeholder(secret: str, default: str) -> bool:
    """Empty (a variable set to nothing overrides a secret file), the development default, or
    deploy/env.example's "change-me..." copied as it is."""
    return not secret or secret == default or secret.lower().startswith("change-me")


#: The variable naming a folder of secret files (Docker's or Kubernetes' secrets mounted as
#: files, one per setting): read where the settings are built, since the folder says where to read.
SECRETS_DIR_VARIABLE = "VIGIL_SECRETS_DIR"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secrets in files keep them out of `docker inspect` and /proc/<pid>/environ; the
        # environment still wins, so one variable can override a mounted file while debugging.
        folder = os.environ.get(SECRETS_DIR_VARIABLE)
        if not folder:
            return init_settings, env_settings, dotenv_settings
        if not Path(folder).is_dir():
            raise UsageError(f"{SECRETS_DIR_VARIABLE}={folder} is not a folder (the secrets mounted as files, one per setting)")
        return init_settings, env_settings, dotenv_settings, SecretsSettingsSource(settings_cls, secrets_dir=folder)

    #: "production" refuses to start with the development defaults of the client-id salt and
    #: the API-key pepper (set both); docker-compose.yml sets it.
    environment: Literal["development", "production"] = "development"
    #: Where `vigil serve` listens (the image: 0.0.0.0:8000). On Kubernetes a Service named
    #: `vigil` injects VIGIL_PORT=tcp://...: set VIGIL_PORT explicitly or enableServiceLinks: false.
    #: Port 0 asks for any free port, which the start-up log names.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: The bundle to serve (default: the shipped one).
    model_dir: Path = DEFAULT_MODEL_DIR
    #: SQLAlchemy URL of the request log: sqlite:///path or postgresql+psycopg://user:pw@host/db.
    database_url: str = "sqlite:///./vigil.db"
    #: Apply Alembic migrations at start (`vigil serve --migrate`); off, an unmigrated database stops it.
    migrate_on_start: bool = False
    #: Requests that may wait on the database at once (log reads, reports, the monitor,
    #: feedback), on threads of their own: a database that hangs holds these, not the threads
    #: that decode images for predictions. One more waits up to 5 s (or VIGIL_DB_TIMEOUT_S, if
    #: shorter), then is answered 503 database_busy.
    db_concurrency: int = Field(8, ge=1, le=64)
    #: Seconds one such statement may run or wait on a lock (PostgreSQL's statement and lock
    #: timeout, SQLite's busy timeout) before it is answered 503 database_unavailable.
    db_timeout_s: float = Field(30.0, gt=0)
    #: Seconds `vigil serve` waits on SIGTERM for in-flight requests before closing them; the
    #: request log then drains. Keep it under the orchestrator's grace period.
    shutdown_timeout_s: float = Field(20.0, gt=0)

    #: Upload limits: bytes are refused while streaming; pixels before decoding.
    max_upload_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(25_000_000, ge=64)
    max_image_side: int = Field(10_000, ge=8)

    #: Torch intra-op threads for the inference worker; 1 avoids the latency spikes
    #: measured with 2 threads on a 2-core machine (see the README's performance notes).
    torch_threads: int = Field(1, ge=1, le=64)

    #: Request-log writer: bounded queue, batch size and maximum wait before a flush.
    log_queue_size: int = Field(10_000, ge=1)
    log_batch_size: int = Field(500, ge=1)
    log_flush_ms: int = Field(100, ge=1)
    #: Seconds the shutdown waits for the queue to reach the database; rows still queued then
    #: (a database that hangs) go to the spool instead. The shutdown timeout plus this must stay
    #: under the orchestrator's grace period with 2 s to spare for a rescue that waits on the
    #: spool's lock (compose: 20 + 5 + 2 < 30 s), or a kill loses them.
    log_drain_timeout_s: float = Field(5.0, gt=0)
    #: Seconds one request-log insert may wait on the database (a lock, a hung server) before
    #: it fails and its rows go to the spool: a database that hangs must not fill the queue
    #: and refuse predictions (503 log_backpressure) while nothing is written. A PostgreSQL
    #: call that makes no progress for twice this (a server that no longer answers at all, where
    #: its own timeouts cannot fire) has its connection broken by the writer's watchdog.
    log_write_timeout_s: float = Field(5.0, gt=0)

    # Request log (issue 5)
    #: Where rows wait while the database is away (JSON lines); default next to the SQLite
    #: file, else ./vigil-spool-<digest of the database's backend, host, port and name>.jsonl. Each process's journal
    #: (the rows it has queued, for the next start if it is killed) is kept beside it.
    log_spool_path: Path | None = None
    #: A full log queue: "reject" answers 503 + Retry-After; "spool" writes the row to the
    #: spool on the request's thread (slower, but the request is served).
    log_queue_full: Literal["reject", "spool"] = "reject"
    #: Seconds between replay attempts while rows wait in the spool.
    log_replay_interval_s: float = Field(1.0, gt=0)
    #: Store the normalised model input with each row (re-scoring, drift analysis); ~3 kB a row.
    log_store_inputs: bool = False
    #: Names this process's hash chains (at most 55 characters): each start's chain is this name
    #: plus a random suffix, since a restarted chain cannot continue the old one; default: host-pid.
    log_writer_id: str | None = Field(None, min_length=1, max_length=NAME_MAX)

    # Inference runtime (issue 6)
    #: Micro-batching: the most inputs in one batch, and the longest a request waits for
    #: company (a lone request is delayed by at most this).
    batch_max_size: int = Field(64, ge=1, le=4096)
    batch_max_wait_ms: float = Field(5.0, ge=0, le=1000)
    #: Inputs per forward inside a batch: per-image cost rose past ~32 with ODIN's backward
    #: on this CPU (see the README's Performance section), so bigger batches run in chunks.
    inference_chunk_size: int = Field(32, ge=1, le=4096)
    #: Requests waiting for inference; beyond it a request is refused with 503 + Retry-After.
    inference_queue_size: int = Field(1024, ge=1)
    #: Longest a request waits for its result before a 503 `inference_timeout`.
    inference_timeout_s: float = Field(10.0, gt=0)
    #: Run the pipeline in a child process with its own GIL (service/inference_process.py): at
    #: concurrency 64 measured 0.85-0.97 of the in-process ceiling against 0.44-0.74 on a thread,
    #: for ~0.4 GB more memory (summed PSS ~1.3 GB against ~0.9 GB; README).
    inference_process: bool = True
    #: Convolutions in channels_last memory format (measured faster for batched convs).
    channels_last: bool = True
    #: Fold eval-mode BatchNorm into the preceding conv at load (exact; models/fusion.py).
    fold_batchnorm: bool = True
    #: POST /v1/predict/batch: most images per request, and the body limit for all of them.
    max_batch_images: int = Field(64, ge=1, le=1024)
    max_batch_upload_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    #: uvicorn access-log lines cost throughput, and the request log records every request anyway.
    access_log: bool = False

    #: Salt for hashing client addresses; the raw address is never stored.
    client_id_salt: str = "vigil-dev-salt"
    #: Admin API keys (comma-separated in the environment is not supported; use JSON list).
    admin_api_keys: list[str] = []

    # Security (issue 8)
    #: When true, predict endpoints need a client (or admin) key: `Authorization: Bearer <key>` or `X-API-Key`.
    require_api_key: bool = False
    #: Client API keys (JSON list): raw keys, or digests `hmac-sha256:<hex>` from `vigil keys digest`
    #: so the raw key never sits in the environment.
    api_keys: list[str] = []
    #: Secret mixed into every key digest (HMAC-SHA256): a leaked digest is useless without it.
    api_key_pepper: str = "vigil-dev-pepper"
    #: Per-client token bucket on predict endpoints (client = key id, else address; an
    #: IPv6 address by its /64):
    #: sustained images per second (a batch of N costs N; 0 turns it off) and burst size;
    #: 429 + Retry-After beyond.
    rate_limit_per_s: float = Field(0.0, ge=0)
    rate_limit_burst: int = Field(20, ge=1)
    #: Buckets kept at most (least recently used dropped), so spoofed clients cannot grow memory.
    rate_limit_max_clients: int = Field(10_000, ge=1)
    #: JSON bodies, and every body outside the prediction paths, over this are refused (413)
    #: while streaming, and so is the JSON part of a v2 inference request whatever its content
    #: type; image and tensor uploads to the prediction paths over the larger of
    #: max_upload_bytes and max_batch_upload_bytes, plus 64 KiB of multipart overhead, likewise.
    max_json_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    #: Seconds a prediction's upload, or a feedback body, may go without a byte before it is
    #: refused (408 body_timeout): a client that sends its headers and goes quiet must not hold
    #: one of VIGIL_MAX_INFLIGHT's slots, or its connection, for as long as it stays open.
    body_idle_timeout_s: float = Field(10.0, gt=0)
    #: After its first VIGIL_BODY_IDLE_TIMEOUT_S, a body must arrive at this many bytes per
    #: second on average, or it is refused (408 body_timeout): one byte every few seconds kept
    #: clear of the idle timeout and held a slot for as long. 0: no minimum. 8 KiB/s takes a
    #: 5 MiB image in about 11 minutes at worst.
    body_min_rate_bps: int = Field(8192, ge=0)
    #: Predict requests in flight at once; beyond it the answer is 503 + Retry-After
    #: instead of an unbounded pile of waiting requests (memory stays bounded).
    max_inflight: int = Field(64, ge=1)
    #: Predict requests one client (its address; IPv6 by its /64) may have in flight at once;
    #: beyond it 503 `overloaded`, as past VIGIL_MAX_INFLIGHT. 0: no such limit. A slot is taken
    #: before the body arrives, so without a body-buffering proxy in front a few clients that
    #: send headers, wait for the 408 and reconnect hold every slot; this caps what one holds.
    max_inflight_per_client: int = Field(0, ge=0)
    #: Browser origins allowed to call the API (CORS); empty keeps CORS closed.
    cors_origins: list[str] = []
    #: Put GET /metrics and the monitor feed (/v1/monitor) behind the admin key (they show
    #: traffic volumes and error rates); the monitor page then asks for the key.
    metrics_admin_only: bool = False

    # Demo, v2, metrics (issue 7)
    #: Log lines as JSON objects (one per line, request id included) or plain text for a terminal.
    log_format: Literal["json", "text"] = "json"
    #: One log line per HTTP request (`vigil.access`: request id, route, status, duration).
    log_requests: bool = True
    #: The demo page (`/`), the monitor page (`/monitor`) and its aggregate feed (`/v1/monitor`).
    demo_enabled: bool = True
    #: How far back the monitor page looks, and at most how many recent requests it aggregates.
    monitor_window_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    monitor_max_rows: int = Field(5000, ge=10, le=100_000)

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production" and _placeholder(self.client_id_salt, "vigil-dev-salt"):
            raise ValueError("set VIGIL_CLIENT_ID_SALT to a secret value in production (not the development default or deploy/env.example's placeholder)")
        return self

    @model_validator(mode="after")
    def _no_placeholder_database_password_in_production(self) -> Settings:
        try:
            password = make_url(self.database_url).password if self.environment == "production" else None
        except ArgumentError:  # not a URL at all: `vigil serve`'s preflight names that mistake
            return self
        if password is not None and _placeholder(str(password), ""):
            raise ValueError("the database password in VIGIL_DATABASE_URL is empty or deploy/env.example's placeholder: set POSTGRES_PASSWORD and POSTGRES_APP_PASSWORD in .env")
        return self

    @model_validator(mode="after")
    def _no_default_pepper_in_production(self) -> Settings:
        if self.environment == "production" and _placeholder(self.api_key_pepper, "vigil-dev-pepper"):
            raise ValueError("set VIGIL_API_KEY_PEPPER to a secret value in production (not the development default or deploy/env.example's placeholder)")
        if self.require_api_key and not (self.api_keys or self.admin_api_keys):
            raise ValueError("VIGIL_REQUIRE_API_KEY is set but no keys are configured (VIGIL_API_KEYS)")
        return self

