"""Service settings from `VIGIL_` environment variables (pydantic-settings).

Built once by the CLI or a test and passed to `create_app`; no module reads the
environment itself, and nothing is built at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import models

#: The bundle shipped in the repository (trained by `make default-model`).
DEFAULT_MODEL_DIR = Path(models.__file__).resolve().parent / "bundles" / "default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model_dir: Path = DEFAULT_MODEL_DIR
    database_url: str = "sqlite:///./vigil.db"
    migrate_on_start: bool = False

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

    #: Salt for hashing client addresses; the raw address is never stored.
    client_id_salt: str = "vigil-dev-salt"
    #: Admin API keys (comma-separated in the environment is not supported; use JSON list).
    admin_api_keys: list[str] = []

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production" and self.client_id_salt == "vigil-dev-salt":
            raise ValueError("set VIGIL_CLIENT_ID_SALT to a secret value in production")
        return self
