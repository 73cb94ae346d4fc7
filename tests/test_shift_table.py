"""scripts/shift_table.py, which measures the README's table of decisions under shifts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.bundle import load_bundle
from models.pipeline import Pipeline
from service.app import create_app
from service.settings import Settings
from training.data import load_mnist

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "shift_table.py"


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shift_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_each_rate_counts_what_its_column_says() -> None:
    st = script()
    results = [
        {"prediction": {"label": 1}, "decision": "accept", "prediction_set": [1]},
        {"prediction": {"label": 2}, "decision": "accept", "prediction_set": [2, 3]},  # wrong, set covers 3
        {"prediction": {"label": 5}, "decision": "abstain", "prediction_set": [5]},
        {"status": 422, "error": {"code": "corrupt_image"}},  # refused: right about nothing
    ]
    row = st.tally(results, [1, 3, 5, 7])
    assert row == st.Row(accuracy=50.0, accepted=50.0, errors_among_accepted=50.0, rejected_ood=0.0, set_coverage=75.0)
    assert st.tally(results[2:], [5, 7]).errors_among_accepted is None  # nothing accepted: no rate
    assert "| x | 50.0 % | 50.0 % | 50.0 % | 0.0 % | 75.0 % |" in st.markdown({"x": row})


def test_the_unshifted_row_is_what_the_model_answers_those_digits(data_dir: Path, tmp_path: Path) -> None:
    """Through the API as PNG files, in order: the same labels and sets as the pipeline's own."""
    st = script()
    test = load_mnist(data_dir, train=False)
    x, y = test.x[:70], test.y[:70]  # more than one request of 64
    digits = [Image.fromarray((d[0] * 255).round().byte().numpy(), mode="L") for d in x]
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, log_spool_path=tmp_path / "spool.jsonl")
    with TestClient(create_app(settings)) as client:
        got = st.answers(client, [st.png(d) for d in digits])
    out = Pipeline(load_bundle(settings.model_dir)).run(x)
    assert [r["prediction"]["label"] for r in got] == out.probs.argmax(-1).tolist()
    assert [sorted(r["prediction_set"]) for r in got] == [torch.nonzero(s).flatten().tolist() for s in out.prediction_sets]
    row = st.tally(got, y.tolist())
    assert row.accuracy == pytest.approx(100 * float((out.probs.argmax(-1) == y).double().mean()))
