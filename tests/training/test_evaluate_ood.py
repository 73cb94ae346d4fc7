"""`vigil evaluate-ood`: OOD sets, every scorer, the served figures; a user's folder of images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.manifest import InputSpec
from models.preprocess import to_model_input
from service.cli import main as vigil
from service.decode import decode_image
from training.ood_report import METRICS
from training.ood_sets import generated_sets, load_folder


@pytest.fixture(scope="module")
def ood_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of several sizes, modes and colours, in nested folders, plus files to skip."""
    root = tmp_path_factory.mktemp("ood_dir")
    (root / "nested").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(root / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (100, 120), dtype=np.uint8)).save(root / "nested" / "gray.jpg")
    Image.fromarray(rng.integers(0, 256, (30, 30, 4), dtype=np.uint8), mode="RGBA").save(root / "alpha.webp")
    (root / "broken.png").write_bytes(b"not an image")
    (root / "notes.txt").write_text("not an image either")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "icon.ico")  # an image, not an allowed format
    # A photo-sized JPEG with no suffix at all: read by content, reduced like an upload.
    yy, xx = np.mgrid[0:1500, 0:2000]
    stripes = (((xx // 37 + yy // 53) % 2) * 255).astype(np.uint8)
    Image.fromarray(np.stack([stripes, stripes // 2, 255 - stripes], -1)).save(root / "scan0001", format="JPEG", quality=90)
    return root


def _as_the_service_converts(data: bytes, spec: InputSpec) -> torch.Tensor:
    decoded = decode_image(data, max_pixels=40_000_000, max_side=10_000)
    return to_model_input(decoded.image, spec)


def test_folder_images_are_converted_like_uploads(ood_dir: Path) -> None:
    spec = InputSpec()
    x, skipped = load_folder(ood_dir, spec)
    assert x.shape == (4, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert skipped == [str(ood_dir / n) for n in ("broken.png", "icon.ico", "notes.txt")]
    # Sorted path order: alpha.webp, nested/gray.jpg, rgb.png, scan0001; each exactly as the
    # service's decode path (header checks, working copy, conversion) turns the same bytes.
    for row, name in ((2, "rgb.png"), (3, "scan0001")):
        torch.testing.assert_close(x[row], _as_the_service_converts((ood_dir / name).read_bytes(), spec))


def test_the_large_image_differs_without_the_working_copy(ood_dir: Path) -> None:
    # Why the shared reduction matters: converting the 2000 x 1500 file at full size gives
    # other pixels than the service's reduced copy (so the test above can tell them apart).
    with Image.open(io.BytesIO((ood_dir / "scan0001").read_bytes())) as img:
        img.load()
        full = to_model_input(img, InputSpec())
    assert float((full - _as_the_service_converts((ood_dir / "scan0001").read_bytes(), InputSpec())).abs().max()) > 0.01


def test_generated_sets_are_seeded_and_what_they_say() -> None:
    digits = torch.zeros(50, 1, 28, 28)
    digits[:, :, 8:20, 12:16] = 1.0  # a bar: sharp edges
    a, b = generated_sets(digits, 20, seed=3), generated_sets(digits, 20, seed=3)
    assert set(a) == {"uniform_noise", "gaussian_noise", "mnist_blurred", "mnist_inverted"}
    for k in a:
        assert a[k].shape == (20, 1, 28, 28) and torch.equal(a[k], b[k])
        assert float(a[k].min()) >= 0 and float(a[k].max()) <= 1
    assert not torch.equal(a["uniform_noise"], generated_sets(digits, 20, seed=4)["uniform_noise"])
    torch.testing.assert_close(a["mnist_inverted"], 1.0 - digits[:20])
    # Heavy blur: the bar's edge (a jump of 1 between neighbours) is smeared to small steps.
    assert float(a["mnist_blurred"].diff(dim=-1).abs().max()) < 0.2
    g = a["gaussian_noise"]
    assert 0.3 < float((g == 0).float().mean() + (g == 1).float().mean()) < 0.8  # N(0.5, 1) clipped: ~62% at the bounds


def test_evaluate_ood_reports_every_scorer_on_every_set(tiny_bundle: Path, data_dir: Path, ood_dir: Path, tmp_path: Path) -> None:
    out, md = tmp_path / "ood.json", tmp_path / "ood.md"
    args = ["evaluate-ood", str(tiny_bundle), "--data-dir", str(data_dir), "--ood-dir", str(ood_dir), "--limit", "200"]
    assert vigil([*args, "--train-size", "500", "--val-size", "600", "--resamples", "200", "--out", str(out), "--markdown", str(md)]) == 0
    res = json.loads(out.read_text())
    fm = res["ood"]["fashion_mnist"]
    for name, g in res["vs_msp"]["fashion_mnist"].items():  # every scorer but msp, gain = the two AUROCs' difference
        assert g["delta_auroc"] == pytest.approx(fm[name]["auroc"] - fm["msp"]["auroc"], abs=1e-6)
        assert g["ci95_low"] <= g["delta_auroc"] <= g["ci95_high"]
    assert set(res["vs_msp"]["fashion_mnist"]) == set(fm) - {"msp"}
    sets = {"fashion_mnist", "uniform_noise", "gaussian_noise", "mnist_blurred", "mnist_inverted", "ood_dir"}
    assert set(res["ood"]) == sets
    assert res["n"]["mnist_test"] == 200 and res["n"]["ood_dir"] == 4
    assert res["ood_dir_unreadable"] == [str(ood_dir / n) for n in ("broken.png", "icon.ico", "notes.txt")]
    for per_scorer in res["ood"].values():
        assert {"msp", "odin", "energy", "mahalanobis", "mahalanobis_layers"} <= set(per_scorer)
        for m in per_scorer.values():
            assert set(m) == set(METRICS) and 0 <= m["auroc"] <= 100 and 0 <= m["detection_error"] <= 50
    assert res["fitted"]["odin"]["odin_temperature"] == 1000.0 and "odin_eps" in res["fitted"]["odin"]
    served = res["served"]
    assert served["ood_gate"]["scorer"] in res["ood"]["fashion_mnist"]
    assert 90 <= served["ood_gate"]["id_test_pass_rate"] <= 100
    assert sum(served["decisions_id_test"].values()) == pytest.approx(100)
    assert 0 <= served["selective"]["test_coverage"] <= 100
    assert "| fashion_mnist | odin |" in md.read_text() and f"3 unreadable file(s) skipped: {ood_dir / 'broken.png'}," in md.read_text()  # named, JSON or not
    g = res["vs_msp"]["fashion_mnist"]["odin"]
    assert f"| odin | {g['delta_auroc']:+.2f} | {g['ci95_low']:+.2f} to {g['ci95_high']:+.2f} |" in md.read_text()


def test_evaluate_ood_refuses_a_folder_that_is_none_and_a_validation_split_reaching_into_training(
    tiny_bundle: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate-ood", str(tiny_bundle), "--data-dir", str(data_dir), "--limit", "50"]
    image = tmp_path / "one.png"
    Image.new("L", (28, 28)).save(image)
    for folder, says in ((tmp_path / "nowhere", "is not a folder of images (it does not exist)"), (image, "one.png is not a folder of images")):
        assert vigil([*args, "--ood-dir", str(folder)]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
    assert vigil([*args, "--val-size", "1001"]) == 2  # the tiny bundle was fitted with 1000
    assert "--val-size 1001 is over the bundle's 1000" in capsys.readouterr().err
