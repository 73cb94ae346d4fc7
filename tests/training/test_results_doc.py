"""The results page computes its verdicts from the numbers: a miss can never read as met."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.results_doc import (
    OOD_STAMP,
    budget_target,
    document,
    finished_at,
    ood_section,
    ood_targets,
    update_ood,
    zoo_ood,
    zoo_targets,
)


def _agg(acc: float, ece: float, nll: float, cn: float | None = None, mcp: float = 30.0, fpr: float = 3.0) -> dict:
    a = {"after_temperature.accuracy": acc, "after_temperature.ece": ece, "after_temperature.nll": nll}
    if cn is not None:
        a |= {"failure_detection.confidnet.aupr_error": cn, "failure_detection.mcp.aupr_error": mcp, "failure_detection.confidnet.fpr95": fpr}
    return {k: {"mean": v, "std": 0.0} for k, v in a.items()}


def test_verdicts_follow_the_numbers() -> None:
    agg = {
        "mnist-deterministic": {**_agg(99.3, 0.4, 0.020), "method": "deterministic"},
        "mnist-ensemble": {**_agg(99.1, 0.6, 0.018, cn=50.0, mcp=40.0, fpr=4.0), "method": "ensemble"},
    }
    lines = "\n".join(zoo_targets(agg))
    assert "| mnist-deterministic: accuracy ≥ 99.2 % | 99.30 % | met |" in lines
    assert "| mnist-ensemble: accuracy ≥ 99.2 % | 99.10 % | **missed** |" in lines
    assert "| mnist-ensemble: ECE after temperature ≤ 0.5 % | 0.60 % | **missed** |" in lines
    assert "ConfidNet AUPR-Error > MCP's | 50.00 vs 40.00 | met |" in lines
    assert "ConfidNet FPR95 ≤ 3.33 (paper) | 4.00 | **missed** |" in lines
    assert "| mnist-ensemble: NLL below mnist-deterministic's | 0.0180 vs 0.0200 | met |" in lines


def _comp(delta: float, low: float, high: float, **extra: object) -> dict:
    return {"delta": delta, "ci95_low": low, "ci95_high": high, "seeds": [0, 1], "per_seed": [delta, delta], **extra}


def test_verdicts_carry_the_paired_interval_and_say_when_it_spans_zero() -> None:
    agg = {
        "mnist-deterministic": {**_agg(99.3, 0.4, 0.020, cn=39.0, mcp=44.0), "method": "deterministic"},
        "mnist-ensemble": {**_agg(99.5, 0.2, 0.015, cn=33.0, mcp=40.0), "method": "ensemble"},
        "mnist-mc-dropout": {**_agg(99.4, 0.2, 0.021), "method": "mc_dropout"},
    }
    comps = {
        "mnist-deterministic": {"confidnet_vs_mcp": _comp(-5.0, -9.5, 1.25)},
        "mnist-ensemble": {"confidnet_vs_mcp": _comp(-7.0, -11.0, -2.5), "nll_vs_baseline": _comp(-0.005, -0.006, -0.004, baseline="mnist-deterministic")},
        # Measured against another baseline: no interval may be borrowed for this row.
        "mnist-mc-dropout": {"nll_vs_baseline": _comp(0.001, 0.0005, 0.0015, baseline="elsewhere")},
    }
    lines = "\n".join(zoo_targets(agg, comps))
    assert (
        "| mnist-deterministic: ConfidNet AUPR-Error > MCP's | 39.00 vs 44.00 (difference -5.00, 95 % CI -9.50 to +1.25) "
        "| **missed** (within noise: the interval spans 0) |"
    ) in lines
    assert "| mnist-ensemble: ConfidNet AUPR-Error > MCP's | 33.00 vs 40.00 (difference -7.00, 95 % CI -11.00 to -2.50) | **missed** |" in lines
    assert (
        "| mnist-ensemble: NLL below mnist-deterministic's | 0.0150 vs 0.0200 (difference -0.0050, 95 % CI -0.0060 to -0.0040) | met |"
    ) in lines
    assert "| mnist-mc-dropout: NLL below mnist-deterministic's | 0.0210 vs 0.0200 | **missed** |" in lines
    # Without comparisons (an older evaluate JSON) the rows are as before.
    assert "(difference" not in "\n".join(zoo_targets(agg))
    zoo = {"aggregate": agg, "runs": {n: [{"method": a["method"]}] for n, a in agg.items()}, "comparisons": comps}
    page = document(zoo, None, {})
    assert "| mnist-ensemble | AUPR-Error %, ConfidNet − MCP | 2 | -7.00 | -11.00 to -2.50 |" in page
    assert "| mnist-ensemble | NLL − mnist-deterministic's | 2 | -0.0050 | -0.0060 to -0.0040 |" in page


def test_the_training_budget_is_judged_on_the_sum_of_the_models() -> None:
    assert budget_target(32.3) == "| all methods: training ≤ 30 min on this 2-core CPU | 32.3 min | **missed** |"
    assert budget_target(30.0).endswith("| 30.0 min | met |")
    agg = {n: {**_agg(99.3, 0.4, 0.020), "method": n} for n in ("deterministic", "ensemble", "variational")}
    zoo = {"aggregate": agg, "runs": {n: [{"method": a["method"]}] for n, a in agg.items()}}
    # Each model alone is under the budget; together they are over it.
    page = document(zoo, None, {"deterministic": 3.3, "ensemble": 14.6, "variational": 14.4})
    targets = page.split("### Targets")[1].split("###")[0]
    assert "| all methods: training ≤ 30 min on this 2-core CPU | 32.3 min | **missed** |" in targets
    assert "| all methods | 32.3 |" in page
    assert "training ≤" not in document(zoo, None, {})


def test_ood_verdicts_follow_the_numbers() -> None:
    def m(auroc: float, fpr: float) -> dict:
        return {"auroc": auroc, "fpr95": fpr}

    ood = {
        "ood": {
            "fashion_mnist": {"msp": m(95.0, 20.0), "odin": m(95.5, 19.0), "energy": m(94.0, 10.0), "best": m(99.5, 4.0)},
            "uniform_noise": {"msp": m(1.0, 100.0), "odin": m(0.0, 100.0), "energy": m(0.0, 100.0), "best": m(98.0, 9.0)},
        }
    }
    lines = "\n".join(ood_targets(ood))
    assert "| odin beats msp in AUROC vs Fashion-MNIST | 95.50 vs 95.00 | met |" in lines
    ood["vs_msp"] = {"fashion_mnist": {"odin": {"delta_auroc": 0.5, "ci95_low": -0.25, "ci95_high": 1.0}}}
    with_ci = "\n".join(ood_targets(ood))
    assert "| odin beats msp in AUROC vs Fashion-MNIST | 95.50 vs 95.00 (gain +0.50, 95 % CI -0.25 to +1.00) | met (within noise: the interval spans 0) |" in with_ci
    ood["vs_msp"]["fashion_mnist"]["odin"]["ci95_low"] = 0.25
    assert "(gain +0.50, 95 % CI +0.25 to +1.00) | met |" in "\n".join(ood_targets(ood))
    assert "| energy beats msp in AUROC vs Fashion-MNIST | 94.00 vs 95.00 | **missed** |" in with_ci  # no interval given
    assert "| energy beats msp in AUROC vs Fashion-MNIST | 94.00 vs 95.00 | **missed** |" in lines
    assert "| best scorer (best) vs Fashion-MNIST: AUROC ≥ 99, FPR95 ≤ 5 | 99.50 / 4.00 | met |" in lines
    assert "| best scorer (best) vs uniform_noise: AUROC ≥ 99 | 98.00 | **missed** |" in lines


def test_zoo_ood_table_averages_seeds_and_judges_each_model() -> None:
    def run(name: str, msp: float, odin: float, energy: float, fpr: tuple[float, float, float]) -> dict:
        sc = {"msp": {"auroc": msp, "fpr95": fpr[0]}, "odin": {"auroc": odin, "fpr95": fpr[1]}, "energy": {"auroc": energy, "fpr95": fpr[2]}}
        return {"model": {"name": name}, "ood": {"fashion_mnist": sc}}

    runs = [run("mnist-deterministic", 96.0, 97.0, 95.0, (20.0, 10.0, 30.0)), run("mnist-deterministic", 98.0, 98.0, 96.0, (10.0, 10.0, 10.0))]
    lines = "\n".join(zoo_ood(runs))
    assert "| mnist-deterministic | 2 | msp | 97.00 | 15.00 | | |" in lines
    assert "| mnist-deterministic | 2 | odin | 97.50 | 10.00 | met | met |" in lines
    assert "| mnist-deterministic | 2 | energy | 95.50 | 20.00 | **missed** | **missed** |" in lines


def test_the_page_is_stamped_with_its_newest_result_file(tmp_path: Path) -> None:
    # Regenerating the page later must not move its date: the stamp is the run's, not now.
    older, newer = tmp_path / "evaluate.json", tmp_path / "ood.json"
    older.write_text("{}")
    newer.write_text("{}")
    os.utime(older, (1_800_000_000, 1_800_000_000))  # 2027-01-15 08:00 UTC
    os.utime(newer, (1_800_003_600, 1_800_003_600))  # an hour later
    assert finished_at([older, newer]) == "2027-01-15 09:00 UTC"
    assert finished_at([older]) == "2027-01-15 08:00 UTC"


def _ood(odin_auroc: float) -> dict:
    row = {"auroc": 97.0, "fpr95": 8.0, "detection_error": 6.0, "aupr_in": 97.0, "aupr_out": 97.0}
    served = {
        "ood_gate": {"scorer": "msp", "threshold": 0.5, "id_test_pass_rate": 99.0},
        "ood_rejected": {"fashion_mnist": 80.0},
        "selective": {"failure_scorer": "msp", "test_risk": 0.4, "test_coverage": 99.5, "validation_risk": 0.5, "validation_coverage": 99.4},
    }
    return {"ood": {"fashion_mnist": {"msp": row, "odin": {**row, "auroc": odin_auroc}, "energy": row}}, "served": served}


def test_update_ood_rewrites_only_the_shipped_model_section() -> None:
    intro = ["# Results", "", "Regenerate ...", "Every table below comes from one run of it, finished 2026-01-01 00:00 UTC.", ""]
    zoo = ["## Calibration and misclassification detection (mean ± std over seeds)", "", "| zoo table |", ""]
    cross = ["", "## ODIN and energy against MSP across the zoo (MNIST test vs Fashion-MNIST test)", "", "| cross |"]
    page = "\n".join([*intro, *zoo, *ood_section(_ood(96.0)), *cross]) + "\n"
    assert "| odin beats msp in AUROC vs Fashion-MNIST | 96.00 vs 97.00 | **missed** |" in page

    updated = update_ood(page, _ood(98.0), "2026-02-02 10:00 UTC")
    stamp = f"{OOD_STAMP} 2026-02-02 10:00 UTC."
    # Everything but the section and the stamp is kept byte for byte, in its place.
    assert updated == "\n".join([*intro[:-1], stamp, "", *zoo, *ood_section(_ood(98.0)), *cross]) + "\n"
    assert "| odin beats msp in AUROC vs Fashion-MNIST | 98.00 vs 97.00 | met |" in updated
    again = update_ood(updated, _ood(98.0), "2026-02-03 10:00 UTC")
    assert again.count(OOD_STAMP) == 1 and "2026-02-03 10:00 UTC." in again and "2026-02-02" not in again

    # A section at the very end of the page (no cross-zoo table after it) is replaced as well.
    tail_page = "\n".join([*intro, *zoo, *ood_section(_ood(96.0))]) + "\n"
    assert update_ood(tail_page, _ood(98.0), "x").endswith("\n".join(ood_section(_ood(98.0))) + "\n")
    with pytest.raises(ValueError, match="make results"):
        update_ood("\n".join([*intro, *zoo]), _ood(98.0), "x")
    # A page without the zoo heading has no end of introduction to stamp: a clear error.
    with pytest.raises(ValueError, match="heading to stamp before"):
        update_ood("\n".join([*intro, *ood_section(_ood(96.0))]), _ood(98.0), "x")


def test_update_ood_on_a_generated_page_equals_the_page_generated_with_the_new_section() -> None:
    zoo = {
        "aggregate": {"mnist-deterministic": {**_agg(99.3, 0.4, 0.02), "method": "deterministic"}},
        "runs": {"mnist-deterministic": [{"method": "deterministic"}]},
    }
    cross = [{"model": {"name": "mnist-deterministic"}, "ood": _ood(96.5)["ood"]}]
    old = document(zoo, _ood(96.0), {"mnist-deterministic": 2.0}, cross, "2026-01-01 00:00 UTC")
    new = document(zoo, _ood(98.0), {"mnist-deterministic": 2.0}, cross, "2026-01-01 00:00 UTC")
    assert old != new
    stamped = new.replace(
        "finished 2026-01-01 00:00 UTC.\n", f"finished 2026-01-01 00:00 UTC.\n{OOD_STAMP} 2026-02-02 10:00 UTC.\n", 1
    )
    assert update_ood(old, _ood(98.0), "2026-02-02 10:00 UTC") == stamped
