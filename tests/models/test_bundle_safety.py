"""Bundles are data, never code (issue 8): pickles, tampering, wrong shapes and bad manifests are refused.

Each refusal is a `BundleError` with a clear message, raised before any model is served.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from models.bundle import MANIFEST, WEIGHTS, BundleError, load_bundle


class _Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


def _manifest(b: Path) -> dict:
    return json.loads((b / MANIFEST).read_text())


def _write(b: Path, weights: bytes | None = None, *, rehash: bool = True, **changes: object) -> None:
    m = _manifest(b)
    if weights is not None:
        (b / WEIGHTS).write_bytes(weights)
    if rehash:
        m["weights_sha256"] = hashlib.sha256((b / WEIGHTS).read_bytes()).hexdigest()
    m.update(changes)
    (b / MANIFEST).write_text(json.dumps(m))


def test_the_untouched_copy_loads(bundle: Path) -> None:
    assert load_bundle(bundle).manifest.name == "tiny"


@pytest.mark.parametrize("rehash", [True, False], ids=["hash-matches", "hash-differs"])
def test_pickle_as_weights_is_refused_and_never_executed(bundle: Path, tmp_path: Path, rehash: bool) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))  # the payload is live: unpickling it does run code
    assert control.exists()
    _write(bundle, payload, rehash=rehash)
    # With a matching hash the refusal must come from the safetensors parser itself.
    match = "not a safetensors file" if rehash else "SHA-256 does not match"
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle)
    assert not marker.exists()


def test_torch_save_zip_as_weights_is_refused(bundle: Path, tmp_path: Path) -> None:
    # torch.save writes a zip holding a pickle: the classic unsafe checkpoint. Refused unread.
    blob = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, blob)
    _write(bundle, blob.read_bytes())
    with pytest.raises(BundleError, match="not a safetensors file"):
        load_bundle(bundle)


def test_tampered_weights_are_refused(bundle: Path) -> None:
    blob = bytearray((bundle / WEIGHTS).read_bytes())
    blob[-5] ^= 0xFF  # one bit pattern in the last tensor's data
    (bundle / WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        load_bundle(bundle)


def test_manifest_architecture_that_does_not_fit_the_tensors_is_refused(bundle: Path) -> None:
    arch = _manifest(bundle)["arch_params"]
    _write(bundle, arch_params={**arch, "hidden": int(arch.get("hidden", 128)) * 2})
    with pytest.raises(BundleError, match="do not fit the manifest's architecture"):
        load_bundle(bundle)


def test_tensor_of_the_wrong_shape_is_refused(bundle: Path) -> None:
    state = st_load((bundle / WEIGHTS).read_bytes())
    name = next(k for k, v in state.items() if k.startswith("model.") and v.ndim == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    _write(bundle, st_save(state))
    with pytest.raises(BundleError, match=r"(?s)do not fit.*size mismatch"):
        load_bundle(bundle)


def test_foreign_tensor_is_refused(bundle: Path) -> None:
    state = st_load((bundle / WEIGHTS).read_bytes())
    _write(bundle, st_save({**state, "extra.payload": torch.zeros(3)}))
    with pytest.raises(BundleError, match="outside the bundle layout"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": 99},
        {"unknown_field": 1},
        {"weights_sha256": "not-a-digest"},
        {"temperature": -1.0},
        {"name": "../../etc"},
        {"class_names": ["only-one"]},
    ],
    ids=["schema-version", "unknown-field", "bad-digest", "negative-temperature", "path-in-name", "one-class"],
)
def test_invalid_manifest_is_refused(bundle: Path, change: dict) -> None:
    _write(bundle, rehash=False, **change)
    with pytest.raises(BundleError, match="invalid manifest"):
        load_bundle(bundle)


@pytest.mark.parametrize("text", [b"{not json", b"\xff\xfe\x00binary", b"[" * 100_000], ids=["syntax", "binary", "deep"])
def test_unparseable_manifest_is_refused(bundle: Path, text: bytes) -> None:
    (bundle / MANIFEST).write_bytes(text)
    with pytest.raises(BundleError, match="invalid manifest"):
        load_bundle(bundle)


def test_missing_files_are_refused(bundle: Path) -> None:
    (bundle / WEIGHTS).unlink()
    with pytest.raises(BundleError, match="no weights.safetensors"):
        load_bundle(bundle)
    (bundle / MANIFEST).unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(bundle)
