"""Every method trains (tiny), bundles, evaluates and serves the v1 contract without code changes."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from models import calibration
from models.bundle import Bundle, load_bundle, save_bundle
from models.manifest import Manifest
from models.pipeline import Pipeline
from models.scorers.shift_consistency import SHIFTS
from service.app import create_app
from service.cli import main as vigil
from service.settings import Settings
from tests.images import digit_png
from training.data import load_mnist
from training.loop import normalise

METHODS = ["deterministic", "mc_dropout", "ensemble", "variational", "laplace"]
SAMPLES = {"deterministic": 1, "mc_dropout": 4, "ensemble": 3, "variational": 4, "laplace": 4}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    out = {}
    for m in METHODS:
        out[m] = root / m
        args = ["train", "--method", m, "--data-dir", str(data_dir), "--out", str(out[m]), "--train-size", "300"]
        args += ["--val-size", "600", "--epochs", "1", "--skip-test", "--quiet"]
        args += ["--members", "3"] if m == "ensemble" else ["--samples", "4"] if m in ("mc_dropout", "laplace", "variational") else []
        args += ["--failure-scorer", "confidnet" if m == "ensemble" else "msp"]
        assert vigil(args) == 0
    return out


def _leaves(tree: object, prefix: str = "") -> dict[str, object]:
    """Every scalar of a JSON answer by its path (pytest.approx compares no nested dicts)."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{prefix}.{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _leaves(sub, f"{prefix}[{i}]").items()}
    return {prefix: tree}


@pytest.mark.parametrize("method", METHODS)
def test_bundle_serves_v1_contract(zoo: dict[str, Path], method: str, data_dir: Path, tmp_path: Path) -> None:
    bundle = load_bundle(zoo[method])
    assert bundle.manifest.method == method
    assert bundle.manifest.temperature > 0
    x = load_mnist(data_dir, train=False).x[:3]
    settings = Settings(model_dir=zoo[method], database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    pngs = [digit_png(d) for d in x]
    with TestClient(create_app(settings)) as client:
        body = client.post("/v1/predict", content=pngs[0], headers={"content-type": "image/png"}).json()
        again = client.post("/v1/predict", content=pngs[0], headers={"content-type": "image/png"}).json()
        files = [("images", (f"{i}.png", pngs[i], "image/png")) for i in (2, 1, 0)]
        in_batch = client.post("/v1/predict/batch", files=files).json()["results"][2]
    # The same image gets the same answer alone, again and beside others (sampled models too).
    answer = ("probabilities", "uncertainty", "failure", "ood", "prediction_set", "decision", "samples")
    for other in (again, in_batch):
        got, expected = _leaves({k: other[k] for k in answer}), _leaves({k: body[k] for k in answer})
        assert got.keys() == expected.keys()
        for key, value in expected.items():  # float32 sums in another order: equal to ~1e-6
            assert got[key] == (pytest.approx(value, rel=1e-4, abs=1e-5) if isinstance(value, float) else value), key
    assert body["model"]["method"] == method
    assert abs(sum(body["probabilities"]) - 1) < 1e-3
    mi = body["uncertainty"]["mutual_information"]
    if SAMPLES[method] == 1:
        assert mi is None
    else:
        assert mi is not None and mi >= 0


def test_confidnet_is_the_served_failure_score(zoo: dict[str, Path]) -> None:
    m = load_bundle(zoo["ensemble"]).manifest
    assert m.failure.name == "confidnet"
    report = m.metrics["confidnet_fit"]
    assert 1 <= report["best_epoch"] <= len(report["val_aupr_error_per_epoch"])
    assert m.method_params["members"] == 3


def test_evaluate_reports_every_score(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    bundles = [str(zoo["ensemble"]), str(zoo["deterministic"])]
    assert vigil(["evaluate", *bundles, "--data-dir", str(data_dir), "--limit", "500", "--out", str(out), "--resamples", "50"]) == 0
    result = json.loads(out.read_text())
    # The paired comparisons measure what the tables measure: their point differences are
    # the tables' own numbers subtracted (both bundles trained with seed 0, so they pair).
    agg, comps = result["aggregate"], result["comparisons"]["mnist-ensemble"]
    cn, mcp = (agg["mnist-ensemble"][f"failure_detection.{s}.aupr_error"]["mean"] for s in ("confidnet", "mcp"))
    assert comps["confidnet_vs_mcp"]["delta"] == pytest.approx(cn - mcp)
    ens_nll, det_nll = (agg[n]["after_temperature.nll"]["mean"] for n in ("mnist-ensemble", "mnist-deterministic"))
    assert comps["nll_vs_baseline"]["baseline"] == "mnist-deterministic"
    assert comps["nll_vs_baseline"]["delta"] == pytest.approx(ens_nll - det_nll, rel=1e-5)
    assert comps["nll_vs_baseline"]["ci95_low"] <= comps["nll_vs_baseline"]["ci95_high"]
    ens = result["runs"]["mnist-ensemble"][0]
    assert set(ens["failure_detection"]) == {"mcp", "entropy", "mutual_information", "confidnet"}
    assert "mutual_information" not in result["runs"]["mnist-deterministic"][0]["failure_detection"]
    for stage in ("before_temperature", "after_temperature"):
        assert 0 <= ens[stage]["accuracy"] <= 100 and ens[stage]["nll"] > 0
    # The aggregate of one seed equals the run itself (std 0).
    agg = result["aggregate"]["mnist-ensemble"]["after_temperature.accuracy"]
    assert agg == {"mean": ens["after_temperature"]["accuracy"], "std": 0.0}


def test_nll_comparisons_name_their_baseline_when_two_models_are_deterministic(
    zoo: dict[str, Path], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `--method confidnet` bundle is a deterministic network too: with two, the comparison
    used to vanish without a word; it says so, and --baseline picks one."""
    other = tmp_path / "other"
    shutil.copytree(zoo["deterministic"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "name": "mnist-other"}))
    bundles = [str(zoo["deterministic"]), str(other), str(zoo["mc_dropout"])]
    common = ["--data-dir", str(data_dir), "--limit", "200", "--resamples", "20"]
    out = tmp_path / "e.json"
    assert vigil(["evaluate", *bundles, *common, "--out", str(out)]) == 0
    assert "NLL comparisons skipped: 2 deterministic models (mnist-deterministic, mnist-other); name one with --baseline" in capsys.readouterr().err
    assert not any("nll_vs_baseline" in c for c in json.loads(out.read_text())["comparisons"].values())
    assert vigil(["evaluate", *bundles, *common, "--out", str(out), "--baseline", "mnist-other"]) == 0
    comps = json.loads(out.read_text())["comparisons"]
    assert comps["mnist-mc-dropout"]["nll_vs_baseline"]["baseline"] == "mnist-other" and "mnist-other" not in comps


def test_variational_keeps_the_samples_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """--samples was capped at 10 for variational without a word; now it reaches the factory,
    and without it the factory's own default applies."""
    from training.loop import TrainConfig
    from training.methods.variational import train_variational
    from training.options import MethodOptions

    asked: list[object] = []

    def stop(**kwargs: object) -> None:
        asked.append(kwargs.get("num_samples"))
        raise InterruptedError

    monkeypatch.setattr("training.methods.variational.variational_cnn", stop)
    for opts in (MethodOptions(num_samples=30), MethodOptions()):
        with pytest.raises(InterruptedError):
            train_variational(None, TrainConfig(epochs=1), opts)  # type: ignore[arg-type]
    assert asked == [30, None]


def test_evaluate_reports_the_served_thresholds_risk_and_coverage_on_test(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    assert vigil(["evaluate", str(zoo["deterministic"]), "--data-dir", str(data_dir), "--limit", "500", "--out", str(out)]) == 0
    run = json.loads(out.read_text())["runs"]["mnist-deterministic"][0]
    selective = run["selective"]
    # Recomputed through the served pipeline: accepted = failure score <= the bundle's threshold.
    bundle = load_bundle(zoo["deterministic"])
    test = load_mnist(data_dir, train=False)
    res = Pipeline(bundle).run(test.x[:500])
    accepted = res.failure_score <= bundle.manifest.failure.threshold
    wrong = res.probs.argmax(-1) != test.y[:500]
    assert selective["test_coverage"] == pytest.approx(100 * float(accepted.float().mean()), abs=1e-4)
    assert selective["test_risk"] == pytest.approx(100 * float(wrong[accepted].float().mean()), abs=1e-4)
    assert 0 < selective["test_coverage"] < 100  # a 1-epoch net on 300 images abstains on some
    assert selective["target_risk"] == pytest.approx(100 * bundle.manifest.failure.target)
    val_risk = bundle.manifest.metrics["validation"]["selective_risk"]  # None: it accepted no validation prediction
    assert selective["validation_risk"] == (None if val_risk is None else pytest.approx(100 * val_risk))
    # The conformal sets as the pipeline serves them: coverage, mean size, single-class share.
    sizes = res.prediction_sets.sum(-1).double()
    covered = res.prediction_sets[torch.arange(500), test.y[:500]]
    conformal = run["conformal"]
    assert conformal["alpha"] == pytest.approx(100 * bundle.manifest.conformal.alpha)
    assert conformal["coverage"] == pytest.approx(100 * float(covered.double().mean()), abs=1e-6)
    assert conformal["mean_size"] == pytest.approx(float(sizes.mean()), abs=1e-9) and conformal["mean_size"] > 1
    assert conformal["singletons"] == pytest.approx(100 * float((sizes == 1).double().mean()), abs=1e-6)


def test_the_training_options_are_stored_in_the_bundle(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "options"
    args = ["train", "--method", "deterministic", "--data-dir", str(data_dir), "--out", str(out), "--train-size", "300"]
    args += ["--val-size", "800", "--epochs", "1", "--skip-test", "--quiet", "--ood-scorer", "energy", "--failure-scorer", "odin"]
    args += ["--target-risk", "0.03", "--ood-pass-rate", "0.995", "--alpha", "0.05"]
    assert vigil(args) == 0
    m = load_bundle(out).manifest
    assert (m.failure.target, m.ood.target, m.conformal.alpha) == (0.03, 0.995, 0.05)
    assert m.metrics["failure_fit"]["odin_eps"] == m.failure.params["eps"]  # what the fitted failure scorer chose
    assert "99.5%" in m.ood.criterion and "3%" in m.failure.criterion
    val = m.metrics["validation"]
    # The thresholds honour the options on the validation data they were fitted on.
    # (A threshold that accepts nothing has no error rate: None, not 0.)
    assert (val["selective_risk"] is None) is (val["coverage"] == 0) and (val["selective_risk"] or 0) <= 0.03 and val["ood_pass_rate"] >= 0.995


def test_a_failure_scorer_fitted_by_name_is_not_fitted_again_for_the_ood_choice(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ODIN as the failure scorer and `auto` for OOD: auto's ODIN candidate is the failure
    scorer's fit, copied, not a second search over eps (a gradient pass per candidate eps)."""
    from training import scorer_fit

    searches: list[float] = []
    real = scorer_fit.choose_odin_eps

    def counted(*args: object, **kwargs: object) -> tuple[float, dict[str, float]]:
        eps, aurocs = real(*args, **kwargs)  # type: ignore[arg-type]
        searches.append(eps)
        return eps, aurocs

    monkeypatch.setattr(scorer_fit, "choose_odin_eps", counted)
    out = tmp_path / "odin-twice"
    args = ["train", "--method", "deterministic", "--data-dir", str(data_dir), "--out", str(out), "--train-size", "300"]
    args += ["--val-size", "800", "--epochs", "1", "--skip-test", "--quiet", "--failure-scorer", "odin", "--ood-scorer", "auto"]
    assert vigil(args) == 0
    m = load_bundle(out).manifest
    assert len(searches) == 1 and m.failure.params["eps"] == searches[0]
    assert "odin" in m.metrics["ood_fit"]["auto_proxy_auroc"]  # the copy still competed
    # refit, both asked for by name: one more search, shared by the two
    again = tmp_path / "odin-refit"
    refit = ["refit", str(out), "--out", str(again), "--data-dir", str(data_dir), "--skip-test", "--failure-scorer", "odin", "--ood-scorer", "odin"]
    assert vigil(refit) == 0
    r = load_bundle(again).manifest
    assert len(searches) == 2 and r.ood.name == "odin" and r.ood.params == r.failure.params
    # A fit with tensors (Mahalanobis' class means) is shared as a copy: the same tensors under
    # both prefixes would share memory, which safetensors refuses to save.
    both = tmp_path / "mahalanobis-twice"
    refit = ["refit", str(out), "--out", str(both), "--data-dir", str(data_dir), "--skip-test", "--failure-scorer", "mahalanobis", "--ood-scorer", "mahalanobis"]
    assert vigil(refit) == 0
    twice = load_bundle(both)
    failure, ood = twice.failure_scorer.state_dict(), twice.ood_scorer.state_dict()
    assert failure.keys() == ood.keys() and failure and all(torch.equal(failure[k], ood[k]) for k in failure)


def test_seeds_train_one_bundle_per_seed(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seeds"
    args = ["train", "--method", "deterministic", "--data-dir", str(data_dir), "--out", str(out), "--seeds", "2", "--seed", "3"]
    args += ["--train-size", "200", "--val-size", "400", "--epochs", "1", "--skip-test", "--quiet", "--ood-scorer", "msp"]
    assert vigil(args) == 0
    seeds = [load_bundle(out / f"seed{k}").manifest for k in (3, 4)]
    assert [m.metrics["training"]["seed"] for m in seeds] == [3, 4]
    # Different seeds, different data order and initialisation: different weights.
    assert seeds[0].weights_sha256 != seeds[1].weights_sha256
    assert seeds[0].name == seeds[1].name  # so that `vigil evaluate` groups them as seeds
    # `vigil evaluate OUT --seeds 2` takes the folder of seeds and reports over both.
    report = tmp_path / "eval.json"
    assert vigil(["evaluate", str(out), "--seeds", "2", "--data-dir", str(data_dir), "--limit", "200", "--out", str(report)]) == 0
    result = json.loads(report.read_text())
    runs = result["runs"]["mnist-deterministic"]
    assert sorted((r["seed"], r["bundle"]) for r in runs) == [(3, str(out / "seed3")), (4, str(out / "seed4"))]  # which run is which
    acc = [r["after_temperature"]["accuracy"] for r in runs]
    assert len(runs) == 2 and acc[0] != acc[1]  # both seeds, not one twice
    assert result["aggregate"]["mnist-deterministic"]["after_temperature.accuracy"]["mean"] == pytest.approx(sum(acc) / 2)
    # Asked for 3 seeds, or given one seed in two folders: refused, not averaged over what is there.
    shutil.copytree(out / "seed3", tmp_path / "seed3-copy")
    err = refused(capsys, ["evaluate", str(out), "--seeds", "3", "--data-dir", str(data_dir), "--limit", "50"])
    assert "vigil evaluate: error: --seeds 3: model 'mnist-deterministic'" in err and "training seeds [3, 4]" in err, err
    # One seed in two folders is no two seeds, with or without --seeds.
    for extra in (["--seeds", "2"], []):
        err = refused(capsys, ["evaluate", str(out / "seed3"), str(tmp_path / "seed3-copy"), *extra, "--data-dir", str(data_dir), "--limit", "50"])
        assert "model 'mnist-deterministic' has several bundles of one training seed ([3, 3])" in err, err
    # Another method under the same name is no seed of it either.
    mc = tmp_path / "mc"
    assert vigil(["train", "--method", "mc_dropout", "--base-bundle", str(out / "seed4"), "--seed", "4", "--name", "mnist-deterministic", "--out", str(mc),
                  "--data-dir", str(data_dir), "--train-size", "200", "--val-size", "400", "--skip-test", "--quiet", "--ood-scorer", "msp"]) == 0  # fmt: skip
    err = refused(capsys, ["evaluate", str(out / "seed3"), str(mc), "--data-dir", str(data_dir), "--limit", "50"])
    assert "bundles named 'mnist-deterministic' are of different methods (deterministic, mc_dropout)" in err, err
    # The same folder named twice is one bundle, not two seeds.
    err = refused(capsys, ["evaluate", str(out / "seed3"), str(out / "seed3"), "--seeds", "2", "--data-dir", str(data_dir), "--limit", "50"])
    assert "1 bundle(s) with training seeds [3]" in err
    for seeds in ("0", "-1"):
        assert "is not a positive integer" in refused(capsys, ["evaluate", str(out), "--seeds", seeds, "--data-dir", str(data_dir)])
    err = refused(capsys, ["evaluate", str(report), "--data-dir", str(data_dir)])
    assert f"vigil evaluate: error: {report} is neither a bundle nor a folder of bundles" in err and "Traceback" not in err


@pytest.mark.parametrize("method", ["mc_dropout", "laplace", "confidnet"])
def test_base_bundle_reuses_the_deterministic_network(
    zoo: dict[str, Path], method: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = load_bundle(zoo["deterministic"])
    common = ["--data-dir", str(data_dir), "--train-size", "300", "--val-size", "600", "--skip-test", "--quiet"]
    common += [] if method == "confidnet" else ["--samples", "4"]
    out = tmp_path / method
    assert vigil(["train", "--method", method, "--out", str(out), "--base-bundle", str(zoo["deterministic"]), *common]) == 0
    built = load_bundle(out)
    # Same weights, not a retrained net of the same shape.
    for name, tensor in base.model.net.state_dict().items():
        assert torch.equal(built.model.net.state_dict()[name], tensor), name
    m = built.manifest
    assert m.metrics["base_bundle"]["weights_sha256"] == base.manifest.weights_sha256
    assert m.training_seconds >= base.manifest.training_seconds
    if method == "confidnet":  # the network as is, with a trained ConfidNet head as its failure score
        assert (m.method, m.failure.name) == ("deterministic", "confidnet")
        assert m.metrics["confidnet_fit"]["best_epoch"] >= 1
    # Another seed means other validation images, some of which trained the base net.
    err = refused(capsys, ["train", "--method", method, "--out", str(tmp_path / "x"), "--seed", "1", "--base-bundle", str(zoo["deterministic"]), *common])
    assert "other data splits" in err


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """`vigil argv` refused as a user's mistake: exit status 2 (ours or argparse's); its stderr."""
    try:
        code = vigil(argv)
    except SystemExit as e:  # argparse's own refusal of an option's value
        code = e.code
    assert code == 2
    return capsys.readouterr().err


def _marked_base(source: Path, layer: str, out: Path) -> tuple[Bundle, Manifest]:
    """`source`'s deterministic bundle with `layer`'s weights redrawn at std 0.3 (about ten times
    an initialisation's), saved to `out`: a network that no training run would produce."""
    base = load_bundle(source)
    with torch.no_grad():
        getattr(base.model.net, layer).weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
    fields = base.manifest.model_dump(exclude={"weights_sha256"})
    return base, save_bundle(out, fields, base.model, base.failure_scorer, base.ood_scorer)


def test_ensemble_base_bundle_is_member_zero_and_the_other_members_are_unchanged(
    zoo: dict[str, Path], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A base network no training run would produce, so that member 0 can only match it by being it.
    base, marked = _marked_base(zoo["deterministic"], "fc2", tmp_path / "base")
    with monkeypatch.context() as m:  # the one method that builds on nothing: refused before the data are read
        m.setattr("training.cli.make_splits", lambda *a, **k: pytest.fail("read the data before refusing"))
        err = refused(capsys, ["train", "--method", "deterministic", "--data-dir", str(data_dir), "--out", str(tmp_path / "x"), "--base-bundle", str(tmp_path / "base")])
    assert "vigil train: error: --base-bundle builds another method on a deterministic network" in err
    out = tmp_path / "ensemble"
    # The zoo fixture's own options, so that members 1 and 2 are trained exactly as there.
    args = ["train", "--method", "ensemble", "--data-dir", str(data_dir), "--out", str(out), "--train-size", "300"]
    args += ["--val-size", "600", "--epochs", "1", "--skip-test", "--quiet", "--members", "3", "--failure-scorer", "msp"]
    assert vigil([*args, "--base-bundle", str(tmp_path / "base")]) == 0
    built = load_bundle(out)
    x = normalise(load_mnist(data_dir, train=False).x[:64])
    with torch.no_grad():
        got = built.model.sample_logits(x)  # [3, B, K], one row per member
        alone = load_bundle(zoo["ensemble"]).model.sample_logits(x)
        want0 = base.model.sample_logits(x)[0]
    assert got.shape == alone.shape == (3, 64, 10)
    # Member 0 is the base network itself, not the fresh ensemble's member 0; members 1 and 2
    # are the ones the ensemble trains without a base (same seeds, same data).
    torch.testing.assert_close(got[0], want0, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(alone[0], want0, atol=1e-2)
    torch.testing.assert_close(got[1:], alone[1:], rtol=1e-4, atol=1e-4)
    m = built.manifest
    assert (m.method, m.method_params["members"]) == ("ensemble", 3)
    assert m.metrics["base_bundle"]["weights_sha256"] == marked.weights_sha256
    assert m.training_seconds >= marked.training_seconds  # the base network's training is part of its cost


def test_variational_posterior_means_start_at_the_base_network(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    # A base network no initialisation would produce: fc1 drawn at ten times its usual scale.
    base, marked = _marked_base(zoo["deterministic"], "fc1", tmp_path / "base")
    out = tmp_path / "variational"
    common = ["--data-dir", str(data_dir), "--train-size", "300", "--val-size", "600", "--skip-test", "--quiet", "--samples", "4", "--epochs", "1"]
    assert vigil(["train", "--method", "variational", "--out", str(out), "--base-bundle", str(tmp_path / "base"), *common]) == 0
    built = load_bundle(out)
    m = built.manifest
    assert (m.method, m.metrics["base_bundle"]["weights_sha256"]) == ("variational", marked.weights_sha256)
    assert m.training_seconds >= marked.training_seconds  # the base network's training is part of its cost
    # Three small ELBO steps leave the means near the base weights; a variational network
    # trained from its own initialisation is nowhere near them.
    w = base.model.net.fc1.weight
    near = float((built.model.fc1.weight_mu - w).norm() / w.norm())
    far = float((load_bundle(zoo["variational"]).model.fc1.weight_mu - w).norm() / w.norm())
    assert near < 0.1 and far > 0.9, (near, far)


def test_confidnet_fine_tuning_serves_its_own_encoder_beside_the_untouched_network(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    base = load_bundle(zoo["deterministic"])
    out = tmp_path / "tuned"
    args = ["train", "--method", "confidnet", "--out", str(out), "--base-bundle", str(zoo["deterministic"]), "--data-dir", str(data_dir)]
    options = ["--confidnet-finetune-epochs", "1", "--confidnet-passes", "distort"]
    assert vigil([*args, "--train-size", "300", "--val-size", "600", "--skip-test", "--quiet", *options]) == 0
    built = load_bundle(out)
    m = built.manifest
    assert m.failure.params["encoder"]["params"] == m.arch_params
    assert m.metrics["confidnet_finetune"]["epochs"] == 1
    assert m.metrics["confidnet_fit"]["passes"] == m.metrics["confidnet_finetune"]["passes"] == "distort"
    for name, tensor in base.model.net.state_dict().items():  # the prediction's network is the base one
        assert torch.equal(built.model.net.state_dict()[name], tensor), name
    pixels = load_mnist(data_dir, train=False).x[:16]
    served = Pipeline(built).run(pixels)
    scorer = built.failure_scorer
    with torch.no_grad():
        own = 1 - scorer.head(scorer.encoder.forward_features(Pipeline(built).normalise(pixels)))
    assert torch.allclose(served.failure_score, own, atol=1e-6)
    # Refitted with another failure scorer by name: no report of the replaced head survives.
    refit = ["refit", str(out), "--out", str(tmp_path / "refit"), "--data-dir", str(data_dir), "--failure-scorer", "msp", "--skip-test"]
    assert vigil(refit) == 0
    assert not {"confidnet_fit", "confidnet_finetune"} & set(load_bundle(tmp_path / "refit").manifest.metrics)


def test_shift_consistency_is_served_as_the_prediction_held_under_shifts(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    """Refitted as an MC-dropout bundle's failure scorer: the served score is the served
    prediction's probability, at the image and at its 8 one-pixel shifts, each as served."""
    out = tmp_path / "shifts"
    assert vigil(["refit", str(zoo["mc_dropout"]), "--out", str(out), "--data-dir", str(data_dir), "--failure-scorer", "shift_consistency", "--skip-test"]) == 0
    bundle = load_bundle(out)
    assert bundle.manifest.failure.name == "shift_consistency" and 0 < bundle.manifest.failure.threshold < 1
    pixels = load_mnist(data_dir, train=False).x[:12]
    pipeline = Pipeline(bundle)
    served = pipeline.run(pixels)
    mcp, pred = served.probs.max(-1)
    held = torch.stack([pipeline.run(torch.roll(pixels, (dy, dx), (-2, -1))).probs.gather(-1, pred[:, None])[:, 0] for dx, dy in SHIFTS])
    assert torch.allclose(served.failure_score, 1 - (mcp + held.mean(0)) / 2, atol=1e-5)


def test_refit_replaces_scorers_and_keeps_the_network(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    src = load_bundle(zoo["deterministic"])
    assert src.manifest.failure.name == "msp"
    out = tmp_path / "refit"
    assert vigil(["refit", str(zoo["deterministic"]), "--out", str(out), "--data-dir", str(data_dir), "--failure-scorer", "confidnet", "--ood-scorer", "energy", "--skip-test"]) == 0
    new = load_bundle(out)
    assert (new.manifest.failure.name, new.manifest.ood.name) == ("confidnet", "energy")
    assert "confidnet_fit" in new.manifest.metrics
    for name, tensor in src.model.state_dict().items():
        assert torch.equal(new.model.state_dict()[name], tensor), name


def test_refit_retrains_a_confidnet_head_the_bundle_already_has(zoo: dict[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.refit as refit_mod

    assert load_bundle(zoo["ensemble"]).manifest.failure.name == "confidnet"
    calls: list[int] = []
    real = refit_mod.fit_confidnet

    def counting(*a: object, **k: object) -> object:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(refit_mod, "fit_confidnet", counting)
    args = ["refit", str(zoo["ensemble"]), "--data-dir", str(data_dir), "--skip-test"]
    assert vigil([*args, "--out", str(tmp_path / "same")]) == 0
    assert calls == []  # not asked for: the stored head is kept
    assert vigil([*args, "--out", str(tmp_path / "new"), "--failure-scorer", "confidnet"]) == 0
    assert calls == [1]  # asked for by name: trained anew although the bundle had one
    assert "seconds" in load_bundle(tmp_path / "new").manifest.metrics["confidnet_fit"]


def test_refit_counts_the_new_heads_training_time_instead_of_the_replaced_ones(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    # The stored head says it took 1000 s; a refit that replaces it must not keep them.
    src = tmp_path / "src"
    shutil.copytree(zoo["ensemble"], src)
    raw = json.loads((src / "manifest.json").read_text())
    raw["metrics"]["confidnet_fit"]["seconds"] = 1000.0
    raw["training_seconds"] += 1000.0
    (src / "manifest.json").write_text(json.dumps(raw))
    started = time.perf_counter()
    assert vigil(["refit", str(src), "--out", str(tmp_path / "new"), "--data-dir", str(data_dir), "--skip-test", "--failure-scorer", "confidnet"]) == 0
    took = time.perf_counter() - started
    new = load_bundle(tmp_path / "new").manifest
    kept = raw["training_seconds"] - 1000.0  # the network's and the scorers' time
    assert kept < new.training_seconds <= kept + took
    assert new.metrics["confidnet_fit"]["seconds"] <= new.training_seconds - kept


def test_refit_auto_lets_the_stored_head_compete_without_retraining(zoo: dict[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.refit as refit_mod

    monkeypatch.setattr(refit_mod, "fit_confidnet", lambda *a, **k: pytest.fail("the stored head is a candidate as it is"))
    out = tmp_path / "auto"
    assert vigil(["refit", str(zoo["ensemble"]), "--out", str(out), "--data-dir", str(data_dir), "--failure-scorer", "auto", "--skip-test"]) == 0
    m = load_bundle(out).manifest
    table = m.metrics["failure_fit"]["auto_cal_aupr_error"]
    assert set(table) == {"msp", "entropy", "mutual_information", "confidnet"}  # the ensemble samples: MI competes
    defined = {k: v for k, v in table.items() if v is not None}
    assert m.failure.name == m.metrics["failure_fit"]["auto_chosen"] == (max(defined, key=defined.get) if defined else "msp")


def test_train_auto_trains_a_head_and_serves_the_winner(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "auto"
    args = ["train", "--method", "deterministic", "--data-dir", str(data_dir), "--out", str(out), "--train-size", "300"]
    args += ["--val-size", "600", "--epochs", "1", "--skip-test", "--quiet", "--failure-scorer", "auto", "--ood-scorer", "auto"]
    fits: list[float] = []
    real_fit = calibration.fit_temperature
    monkeypatch.setattr(calibration, "fit_temperature", lambda *a, **k: fits.append(real_fit(*a, **k)) or fits[-1])
    assert vigil(args) == 0
    m = load_bundle(out).manifest
    # Both auto choices scored at the temperature the bundle serves, fitted once for both of
    # them and for the bundle.
    assert len(fits) == 1 and fits[0] == pytest.approx(m.temperature) and m.metrics["ood_fit"]["auto_temperature"] == pytest.approx(m.temperature)
    assert "confidnet_fit" in m.metrics  # the head was trained, whether or not it won
    table = m.metrics["failure_fit"]["auto_cal_aupr_error"]
    assert set(table) == {"msp", "entropy", "confidnet"}  # S = 1: no mutual information
    defined = {k: v for k, v in table.items() if v is not None}
    assert m.failure.name == m.metrics["failure_fit"]["auto_chosen"] == (max(defined, key=defined.get) if defined else "msp")


def test_train_without_auto_fits_the_served_temperature_once(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "plain"
    args = ["train", "--method", "deterministic", "--data-dir", str(data_dir), "--out", str(out), "--train-size", "300"]
    args += ["--val-size", "600", "--epochs", "1", "--skip-test", "--quiet"]
    fits: list[float] = []
    real_fit = calibration.fit_temperature
    monkeypatch.setattr(calibration, "fit_temperature", lambda *a, **k: fits.append(real_fit(*a, **k)) or fits[-1])
    assert vigil(args) == 0
    assert len(fits) == 1 and fits[0] == pytest.approx(load_bundle(out).manifest.temperature)  # finalize fitted it


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target-risk", "1.5"], "target risk"),
        (["--ood-pass-rate", "0"], "OOD pass rate"),
        (["--alpha", "1"], "conformal alpha"),
        (["--method", "confidnet", "--failure-scorer", "entropy"], "must be confidnet or auto"),
        (["--confidnet-finetune-epochs", "1"], "--confidnet-finetune-epochs shapes a ConfidNet head: --failure-scorer must be"),
        (["--confidnet-passes", "distort"], "--confidnet-passes shapes a ConfidNet head: --failure-scorer must be confidnet or auto, not msp"),
        (["--method", "ensemble", "--failure-scorer", "confidnet", "--confidnet-finetune-epochs", "1"], "needs a single network"),
        (["--failure-scorer", "confidnet", "--confidnet-finetune-epochs", "-1"], "-1 is not a non-negative integer"),
        (["--failure-scorer", "confidnet", "--confidnet-passes", "rotate"], "unknown ConfidNet passes"),
        (["--failure-scorer", "bogus"], "--failure-scorer: unknown scorer 'bogus'"),
        (["--ood-scorer", "odn"], "--ood-scorer: unknown scorer 'odn'; known: auto, energy, entropy, mahalanobis, mahalanobis_layers, msp,"),  # no failure-only scorer
        (["--epochs", "0"], "0 is not a positive integer"),
        (["--train-size", "-5"], "-5 is not a positive integer"),
        (["--val-size", "9"], "the validation size must be at least 10"),
        (["--train-size", "20"], "the 20 training images hold no digit 0: raise --train-size"),
        (["--seeds", "0"], "0 is not a positive integer"),
        (["--seed", "4294967296"], "4294967296 is not a seed (0-4294966)"),  # it would draw as seed 0 does
        (["--seed", "536870912", "--method", "ensemble"], "536870912 is not a seed (0-4294966)"),  # 2**29: its members' draws were seed 0's
        (["--seed", "-1"], "-1 is not a seed"),
        (["--seed", "4294966", "--seeds", "2"], "--seed 4294966 with --seeds 2 goes past the largest seed, 4294966"),
        (["--members", "3"], "--members is for --method ensemble, not deterministic"),
        (["--samples", "3"], "--samples is for --method mc_dropout, laplace, variational, not deterministic"),
        (["--failure-scorer", "mutual_information"], "mutual_information is 0 for every input of a model that answers with one sample (deterministic)"),
        (["--method", "mc_dropout", "--samples", "1", "--ood-scorer", "mutual_information"], "answers with one sample (mc_dropout)"),
        (["--ood-scorer", "confidnet"], "--ood-scorer: confidnet is a failure scorer"),
        (["--ood-scorer", "shift_consistency"], "--ood-scorer: shift_consistency is a failure scorer"),
        (["--name", "my model"], "--name 'my model': String should match pattern"),
        (["--version", ""], "--version '': String should have at least 1 character"),
    ],
)
def test_bad_training_options_are_refused_before_training(
    extra: list[str], message: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_training(*a: object, **k: object) -> None:
        raise AssertionError("trained before refusing the options")

    monkeypatch.setattr("training.methods.deterministic.train_net", no_training)
    args = ["train", "--data-dir", str(data_dir), "--out", str(tmp_path / "b"), "--train-size", "100", "--val-size", "200"]
    err = refused(capsys, [*args, "--epochs", "1", "--skip-test", "--quiet", *extra])
    assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "b").exists()


def test_an_unwritable_out_or_a_missing_data_dir_is_refused_before_training(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("training.methods.deterministic.train_net", lambda *a, **k: pytest.fail("trained before refusing"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    small = ["--train-size", "100", "--val-size", "200", "--epochs", "1", "--skip-test", "--quiet"]
    err = refused(capsys, ["train", "--data-dir", str(data_dir), "--out", str(blocker / "bundle"), *small])
    assert "is not a writable directory" in err
    err = refused(capsys, ["train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b"), *small])
    assert f"no MNIST under {tmp_path / 'nowhere'}" in err and "--data-dir" in err


def test_a_download_that_fails_is_said_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """torchvision's RuntimeError from a machine without internet was a traceback (status 70 now)."""

    class MNIST:
        def __init__(self, *a: object, **k: object) -> None:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example.invalid/, got:\n<urlopen error>")

    monkeypatch.setattr("torchvision.datasets.MNIST", MNIST)
    err = refused(capsys, ["train", "--download", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "b"), "--quiet"])
    assert "could not download MNIST into" in err and "(Error downloading train-images-idx3-ubyte.gz:)" in err and "--data-dir" in err, err


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        ("deterministic", ["--alpha", "0"], "conformal alpha"),
        ("deterministic", ["--confidnet-passes", "distort"], "--confidnet-passes shapes a ConfidNet head: --failure-scorer must be confidnet or auto, and it was not given"),
        ("deterministic", ["--failure-scorer", "msp", "--confidnet-finetune-epochs", "1"], "must be confidnet or auto, not msp"),
        ("deterministic", ["--failure-scorer", "confidnet", "--confidnet-passes", "rotate"], "unknown ConfidNet passes"),
        ("ensemble", ["--failure-scorer", "auto", "--confidnet-finetune-epochs", "1"], "needs a single network"),
        ("deterministic", ["--ood-scorer", "bogus"], "--ood-scorer: unknown scorer 'bogus'"),
        ("deterministic", ["--ood-scorer", "confidnet"], "confidnet is a failure scorer"),
        ("deterministic", ["--failure-scorer", "mutual_information"], "answers with one sample (deterministic)"),
        ("ensemble", ["--version", "x" * 51], "at most 50 characters"),
    ],
)
def test_refit_refuses_bad_options_before_fitting(
    method: str,
    extra: list[str],
    message: str,
    zoo: dict[str, Path],
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import training.refit as refit_mod

    monkeypatch.setattr(refit_mod, "make_splits", lambda *a, **k: pytest.fail("fitted before refusing the options"))
    err = refused(capsys, ["refit", str(zoo[method]), "--out", str(tmp_path / "r"), "--data-dir", str(data_dir), *extra])
    assert message in err, err
    assert not (tmp_path / "r").exists()


def test_refit_trains_a_head_with_the_recipe_asked_for(zoo: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    src = load_bundle(zoo["deterministic"])
    out = tmp_path / "tuned"
    args = ["refit", str(zoo["deterministic"]), "--out", str(out), "--data-dir", str(data_dir), "--skip-test", "--failure-scorer", "confidnet"]
    assert vigil([*args, "--confidnet-passes", "distort", "--confidnet-finetune-epochs", "1"]) == 0
    new = load_bundle(out)
    m = new.manifest
    assert m.metrics["confidnet_fit"]["passes"] == m.metrics["confidnet_finetune"]["passes"] == "distort"
    assert m.metrics["confidnet_finetune"]["epochs"] == 1
    assert m.failure.params["encoder"]["params"] == src.manifest.arch_params  # the served head has its own encoder
    for name, tensor in src.model.state_dict().items():  # the classifier is untouched
        assert torch.equal(new.model.state_dict()[name], tensor), name


def test_refit_auto_with_a_recipe_trains_a_new_head_instead_of_the_stored_one(
    zoo: dict[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.refit as refit_mod

    asked: list[tuple[str, int]] = []
    real = refit_mod.fit_confidnet

    def recording(*a: object, **k: object) -> object:
        asked.append((a[4], a[5]))  # passes, fine-tuning epochs
        return real(*a, **k)

    monkeypatch.setattr(refit_mod, "fit_confidnet", recording)
    out = tmp_path / "auto"
    args = ["refit", str(zoo["ensemble"]), "--out", str(out), "--data-dir", str(data_dir), "--skip-test", "--failure-scorer", "auto"]
    assert vigil([*args, "--confidnet-passes", "distort"]) == 0
    assert asked == [("distort", 0)]
    m = load_bundle(out).manifest
    assert m.metrics["confidnet_fit"]["passes"] == "distort"
    assert "confidnet_finetune" not in m.metrics


@pytest.mark.parametrize(("method", "from_base", "epochs"), [("deterministic", False, 6), ("variational", False, 20), ("variational", True, 4)])
def test_epochs_default_to_what_the_method_needs(zoo: dict[str, Path], data_dir: Path, tmp_path: Path, method: str, from_base: bool, epochs: int) -> None:
    # Without --epochs a variational network from a random start gets the 20 epochs it needs to
    # pass 99.2 % (not the 6 of a plain network), and 4 from a trained network's weights.
    # The zoo's splits where its network is the base; a third of them otherwise (20 epochs, twice).
    args = ["train", "--method", method, "--data-dir", str(data_dir), "--train-size", "300" if from_base else "100", "--val-size", "600"]
    args += ["--skip-test", "--quiet", "--ood-scorer", "msp", "--failure-scorer", "msp"]
    args += ["--samples", "2"] if method == "variational" else []
    args += ["--base-bundle", str(zoo["deterministic"])] if from_base else []
    assert vigil([*args, "--out", str(tmp_path / "default")]) == 0
    assert vigil([*args, "--out", str(tmp_path / "explicit"), "--epochs", str(epochs)]) == 0
    default, explicit = (load_bundle(tmp_path / d).manifest for d in ("default", "explicit"))
    # Trained, not only recorded, with that many epochs: the same seed gives the same weights.
    assert default.metrics["training"]["epochs"] == epochs
    assert default.weights_sha256 == explicit.weights_sha256


def test_evaluate_writes_into_folders_it_makes(tiny_bundle: Path, data_dir: Path, tmp_path: Path) -> None:
    """A missing folder was approved, then never made: the write failed after the evaluation."""
    md, js = tmp_path / "new" / "deep" / "t.md", tmp_path / "other" / "t.json"
    assert vigil(["evaluate", str(tiny_bundle), "--data-dir", str(data_dir), "--limit", "20", "--resamples", "10", "--markdown", str(md), "--out", str(js)]) == 0
    assert "| model |" in md.read_text() and "aggregate" in json.loads(js.read_text())


def test_evaluate_refuses_an_unwritable_output_before_evaluating(
    tiny_bundle: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import training.evaluate as evaluate_mod

    monkeypatch.setattr(evaluate_mod, "evaluate_bundle", lambda *a, **k: pytest.fail("evaluated before refusing"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = refused(capsys, ["evaluate", str(tiny_bundle), "--data-dir", str(data_dir), "--limit", "20", "--markdown", str(blocker / "t.md")])
    assert f"--markdown {blocker / 't.md'}: cannot write there ({blocker} is a file, not a folder)" in err
    err = refused(capsys, ["evaluate", str(tiny_bundle), "--data-dir", str(data_dir), "--limit", "20", "--out", str(tmp_path)])
    assert "is a directory" in err
    monkeypatch.setattr(evaluate_mod, "load_mnist", lambda *a, **k: pytest.fail("read the test set before refusing"))
    err = refused(capsys, ["evaluate", str(tiny_bundle), "--data-dir", str(data_dir), "--baseline", "nope"])
    assert "--baseline 'nope' is none of the models evaluated" in err
    err = refused(capsys, ["evaluate", str(tiny_bundle), str(tiny_bundle.parent / "missing"), "--data-dir", str(data_dir)])
    assert "is neither a bundle nor a folder of bundles" in err


def test_a_bug_inside_a_command_keeps_its_traceback(
    tiny_bundle: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a user's mistakes are shortened to one line: a ValueError from a computation is a bug."""

    def broken_ece(*a: object, **k: object) -> float:
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr("training.metrics.ece", broken_ece)
    assert vigil(["evaluate", str(tiny_bundle), "--data-dir", str(data_dir), "--limit", "20"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: operands could not be broadcast together" in err and "internal error (a bug" in err


def test_the_ood_threshold_is_fitted_on_validation_inputs_the_scorer_never_saw(zoo: dict[str, Path], data_dir: Path) -> None:
    from models.thresholds import pass_rate_threshold
    from training.data import make_splits
    from training.scorer_fit import fit_rows

    bundle = load_bundle(zoo["deterministic"])
    splits = make_splits(data_dir, val_size=600, seed=0, train_size=300)  # the fixture's split
    scores = Pipeline(bundle).run(splits.val.x).ood_score
    n = fit_rows(len(splits.val))
    assert 0 < n < len(scores)
    held_out = pass_rate_threshold(scores[n:], bundle.manifest.ood.target or 0.99)
    assert bundle.manifest.ood.threshold == pytest.approx(held_out, rel=1e-6)
    assert bundle.manifest.ood.threshold != pytest.approx(pass_rate_threshold(scores, 0.99), rel=1e-6)  # not the whole split
    passed = float((scores[n:] <= bundle.manifest.ood.threshold).float().mean())
    assert bundle.manifest.metrics["validation"]["ood_pass_rate"] == pytest.approx(passed)
    # The drift reference too: from the held-out rows, not those the scorer was standardised on.
    reference = torch.tensor(bundle.manifest.reference["ood_score"])
    assert torch.allclose(reference, scores[n:][: len(reference)], atol=1e-5) and len(reference) == min(2000, len(scores) - n)


def test_refit_fits_a_mahalanobis_or_odin_failure_scorer_and_keeps_the_bundles_rules(
    zoo: dict[str, Path], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Named failure scorers that need fitting are fitted (they were built empty and crashed
    after the work); the bundle's own risk, pass rate and alpha stay unless asked for."""
    base = ["--data-dir", str(data_dir), "--skip-test"]
    strict = tmp_path / "strict"
    assert vigil(["refit", str(zoo["deterministic"]), "--out", str(strict), *base, "--target-risk", "0.02", "--ood-pass-rate", "0.95", "--alpha", "0.05", "--version", "2"]) == 0
    assert "keeps mnist-deterministic" not in capsys.readouterr().err  # a new version: nothing to tell apart
    again = tmp_path / "again"
    assert vigil(["refit", str(strict), "--out", str(again), *base, "--failure-scorer", "mahalanobis", "--ood-scorer", "odin"]) == 0
    err = capsys.readouterr().err
    assert "keeps mnist-deterministic v2" in err and "pass --version" in err
    m = load_bundle(again).manifest
    assert (m.failure.target, m.ood.target, m.conformal.alpha) == (0.02, 0.95, 0.05)
    assert (m.failure.name, m.ood.name) == ("mahalanobis", "odin") and m.ood.params["eps"] == m.metrics["ood_fit"]["odin_eps"]
    assert "failure_fit" not in m.metrics  # Mahalanobis chooses nothing
    odin = tmp_path / "odin"
    assert vigil(["refit", str(strict), "--out", str(odin), *base, "--failure-scorer", "odin", "--version", "3"]) == 0
    m = load_bundle(odin).manifest
    # The eps ODIN chose as the failure scorer, and what chose it, are recorded as for the OOD scorer.
    assert m.metrics["failure_fit"]["odin_eps"] == m.failure.params["eps"]
    assert len(m.metrics["failure_fit"]["odin_proxy_auroc_by_eps"]) > 1  # a choice among several
    served = Pipeline(load_bundle(again)).run(load_mnist(data_dir, train=False).x[:8])
    assert served.failure_score.isfinite().all() and served.failure_score.std() > 0  # fitted means: scores differ


def test_refit_with_risk_confidence_bounds_the_risk_and_keeps_the_choice(tiny_bundle: Path, data_dir: Path, tmp_path: Path) -> None:
    base = ["--data-dir", str(data_dir), "--skip-test", "--target-risk", "0.2"]  # the tiny network is right 57 % of the time
    plain, sure, again = tmp_path / "plain", tmp_path / "sure", tmp_path / "again"
    assert vigil(["refit", str(tiny_bundle), "--out", str(plain), *base]) == 0
    assert vigil(["refit", str(tiny_bundle), "--out", str(sure), *base, "--risk-confidence", "0.9", "--version", "2"]) == 0
    p, s = load_bundle(plain).manifest, load_bundle(sure).manifest
    assert (p.failure.confidence, s.failure.confidence) == (None, 0.9)
    assert "with 90% confidence" in s.failure.criterion and "Geifman" in s.failure.criterion
    v = s.metrics["validation"]
    assert v["selective_risk"] <= v["risk_bound"] <= 0.2 and v["coverage"] > 0 and "risk_bound" not in p.metrics["validation"]
    assert s.failure.threshold <= p.failure.threshold and v["coverage"] <= p.metrics["validation"]["coverage"]  # the price of the bound
    assert vigil(["refit", str(sure), "--out", str(again), "--data-dir", str(data_dir), "--skip-test", "--version", "3"]) == 0
    assert load_bundle(again).manifest.failure.confidence == 0.9  # the bundle's own rule, kept
    off = tmp_path / "off"
    assert vigil(["refit", str(sure), "--out", str(off), "--data-dir", str(data_dir), "--skip-test", "--version", "4", "--risk-confidence", "off"]) == 0
    assert load_bundle(off).manifest.failure.confidence is None and load_bundle(off).manifest.failure.threshold == p.failure.threshold
    settings = Settings(model_dir=sure, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    with TestClient(create_app(settings)) as client:  # the model card says which promise the threshold makes
        failure = client.get("/v1/models").json()[0]["failure"]
    assert (failure["target"], failure["confidence"]) == (0.2, 0.9)


def test_train_takes_risk_confidence_off_as_its_help_says(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` gives the default as "off", and refit takes it; train refused it as a float."""
    args = ["train", "--data-dir", str(data_dir), "--train-size", "100", "--val-size", "600", "--epochs", "1", "--skip-test", "--quiet", "--ood-scorer", "msp"]
    assert vigil([*args, "--out", str(tmp_path / "off"), "--risk-confidence", "off"]) == 0
    assert vigil([*args, "--out", str(tmp_path / "default")]) == 0
    assert '"failure": "msp"' in capsys.readouterr().out  # the scorers the bundle serves, as refit prints them
    off, default = (load_bundle(tmp_path / d).manifest.failure for d in ("off", "default"))
    assert off == default  # the same fit: a threshold met on validation, no bound


def test_refit_and_train_refuse_an_out_folder_that_is_the_source_or_not_a_bundle(tiny_bundle: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """refit --out SOURCE rewrote the served bundle in place, under the version its logged
    answers name; --out a folder of other files got a manifest dropped among them."""
    before = (tiny_bundle / "manifest.json").read_bytes()
    assert vigil(["refit", str(tiny_bundle), "--out", str(tiny_bundle), "--data-dir", str(data_dir), "--skip-test"]) == 2
    assert "is the bundle being refitted" in capsys.readouterr().err and (tiny_bundle / "manifest.json").read_bytes() == before
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.png").write_bytes(b"not a bundle")
    for argv in (["refit", str(tiny_bundle)], ["train", "--train-size", "100", "--val-size", "600", "--epochs", "1"]):
        assert vigil([*argv, "--out", str(photos), "--data-dir", str(data_dir), "--skip-test"]) == 2
        assert "holds files but no bundle" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == ["cat.png"]
    cut_short = tmp_path / "cut-short"  # a run stopped between the weights and the manifest
    cut_short.mkdir()
    (cut_short / "weights.safetensors").write_bytes(b"partial")
    assert vigil(["refit", str(tiny_bundle), "--out", str(cut_short), "--data-dir", str(data_dir), "--skip-test", "--version", "9"]) == 0


def test_a_bundle_whose_threshold_accepts_nothing_is_warned_of(tiny_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run can fit a failure threshold that accepts no validation prediction: served,
    the bundle abstains on everything, and train said nothing (CLI walkthrough)."""
    from training.finalize import warn_if_all_abstain

    m = load_bundle(tiny_bundle).manifest
    for coverage, warned in ((0.0, True), (0.4, False)):
        metrics = {**m.metrics, "validation": {**m.metrics["validation"], "coverage": coverage}}
        warn_if_all_abstain(m.model_copy(update={"metrics": metrics}))
        assert ("abstains on every input" in capsys.readouterr().err) is warned, coverage


def test_a_threshold_that_accepts_nothing_has_no_selective_risk(
    tiny_bundle: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error rate of no accepted prediction is undefined: it was reported as a perfect 0 %, in
    the manifest, `vigil evaluate` and the mean over seeds (ML workflow walkthrough)."""
    import json

    # What selective_risk_threshold answers when even the most confident prediction is wrong:
    # a threshold under every score (MCP's failure score is never negative).
    monkeypatch.setattr("training.finalize.selective_risk_threshold", lambda scores, correct, target: (-1.0, 0.0, 0.0))
    strict = tmp_path / "strict"
    assert vigil(["refit", str(tiny_bundle), "--out", str(strict), "--data-dir", str(data_dir), "--skip-test", "--version", "7", "--failure-scorer", "msp"]) == 0
    val = load_bundle(strict).manifest.metrics["validation"]
    assert val["coverage"] == 0 and val["selective_risk"] is None
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert vigil(["evaluate", str(strict), "--data-dir", str(data_dir), "--limit", "200", "--out", str(out)]) == 0
    selective = json.loads(out.read_text())
    text = json.dumps(selective)
    assert '"test_risk": null' in text and '"validation_risk": null' in text and '"test_coverage": 0.0' in text, text[:2000]
