"""Training-side settings from `VIGIL_` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    #: torchvision root holding MNIST/raw and FashionMNIST/raw.
    data_dir: Path = Path("../shared/datasets")
