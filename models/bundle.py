"""Model bundles: a folder with `weights.safetensors` and `manifest.json`. Never pickle.

Loading validates the manifest schema, checks the weights' SHA-256 against the
manifest before parsing them, and loads the tensors strictly into the architecture
the manifest names, so a mismatched or tampered bundle is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from models.base import UncertaintyModel
from models.manifest import Manifest
from models.methods import build_model
from models.scorers.base import Scorer
from models.scorers.registry import build_scorer

WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
_PREFIXES = ("model.", "scorers.failure.", "scorers.ood.")


class BundleError(ValueError):
    """A bundle that cannot be served: missing files, bad manifest, bad or foreign weights."""


@dataclass
class Bundle:
    manifest: Manifest
    model: UncertaintyModel
    failure_scorer: Scorer
    ood_scorer: Scorer


def _state(bundle_model: UncertaintyModel, failure: Scorer, ood: Scorer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in bundle_model.state_dict().items()}
    state.update({f"scorers.failure.{k}": v for k, v in failure.state_dict().items()})
    state.update({f"scorers.ood.{k}": v for k, v in ood.state_dict().items()})
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_bundle(path: Path, manifest_fields: dict, model: UncertaintyModel, failure: Scorer, ood: Scorer) -> Manifest:
    """Write weights then a manifest that records their SHA-256. Returns the manifest."""
    path.mkdir(parents=True, exist_ok=True)
    blob = st_save(_state(model, failure, ood))
    manifest = Manifest(**{**manifest_fields, "weights_sha256": hashlib.sha256(blob).hexdigest()})
    (path / WEIGHTS).write_bytes(blob)
    (path / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def _field_and_message(err: Any) -> str:
    return f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"


def validation_summary(e: ValidationError, most: int = 3, describe: Callable[[Any], str] = _field_and_message) -> str:
    """pydantic's errors on one line (`field: message; ...`, each as `describe` words it),
    without its links and inputs."""
    parts = [describe(err) for err in e.errors()[:most]]
    more = e.error_count() - most
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate(json.loads((path / MANIFEST).read_text()))
    except FileNotFoundError as e:
        raise BundleError(f"{path}: no {MANIFEST}") from e
    except ValidationError as e:
        raise BundleError(f"{path / MANIFEST}: invalid manifest: {validation_summary(e)}") from e
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"{path / MANIFEST}: invalid manifest: {e}") from e


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_bundle(path: Path) -> Bundle:
    """Load a bundle for serving (eval mode, parameters frozen)."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        blob = (path / WEIGHTS).read_bytes()
    except FileNotFoundError as e:
        raise BundleError(f"{path}: no {WEIGHTS}") from e
    if hashlib.sha256(blob).hexdigest() != manifest.weights_sha256:
        raise BundleError(f"{path / WEIGHTS}: SHA-256 does not match the manifest; refusing to load")
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError) as e:
        raise BundleError(f"{path / WEIGHTS}: not a safetensors file: {e}") from e
    foreign = sorted(k for k in state if not k.startswith(_PREFIXES))
    if foreign:  # a tensor nobody loads is a sign of the wrong file, not something to ignore
        raise BundleError(f"{path / WEIGHTS}: tensors outside the bundle layout: {foreign[:5]}")
    try:
        model = build_model(manifest.method, manifest.architecture, manifest.arch_params, manifest.method_params)
        failure = build_scorer(manifest.failure.name, manifest.failure.params)
        ood = build_scorer(manifest.ood.name, manifest.ood.params)
        model.load_state_dict(_split(state, "model."), strict=True)
        failure.load_state_dict(_split(state, "scorers.failure."), strict=True)
        ood.load_state_dict(_split(state, "scorers.ood."), strict=True)
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise BundleError(f"{path}: weights do not fit the manifest's architecture: {e}") from e
    for module in (model, failure, ood):
        module.eval()
        module.requires_grad_(False)
    return Bundle(manifest, model, failure, ood)
