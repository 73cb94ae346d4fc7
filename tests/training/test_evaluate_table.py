"""`vigil evaluate`'s printed table: issue 3 asks for accuracy, NLL, Brier and ECE both before
and after temperature scaling."""

from __future__ import annotations

from training.evaluate import markdown

BEFORE = {"accuracy": 90.0, "nll": 0.5, "brier": 0.2, "ece": 3.0}
AFTER = {"accuracy": 91.0, "nll": 0.4, "brier": 0.15, "ece": 1.0}


def test_every_classification_figure_is_shown_before_and_after_temperature() -> None:
    agg = {f"{when}_temperature.{k}": {"mean": v, "std": 0.0} for when, figs in (("before", BEFORE), ("after", AFTER)) for k, v in figs.items()}
    agg |= {"selective.test_risk": {"mean": 0.4, "std": 0.0}, "selective.test_coverage": {"mean": 99.0, "std": 0.0}}
    table = markdown({"m": ("deterministic", 1, agg)}).split("\n\n")[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {r.split("|")[4].strip(): [c.strip() for c in r.strip("|").split("|")] for r in table[2:]}
    assert set(rows) == {"before", "after"}
    for when, figs in (("before", BEFORE), ("after", AFTER)):
        row = dict(zip(header, rows[when], strict=True))
        assert float(row["accuracy %"]) == figs["accuracy"] and float(row["NLL"]) == figs["nll"]
        assert float(row["Brier"]) == figs["brier"] and float(row["ECE %"]) == figs["ece"]
    assert dict(zip(header, rows["after"], strict=True))["coverage %"] == "99.00"  # the served threshold's, after T only
    assert dict(zip(header, rows["before"], strict=True))["coverage %"] == "–"
