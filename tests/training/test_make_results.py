"""`make results RESUME=1` trains only the bundles a zoo lacks; a plain run retrains them all.

The recipe itself runs for an hour, so `vigil` and `python` are stand-ins that log their
arguments (a `train` writes the manifest, as a finished bundle has); what is checked is
the Makefile's own logic, against the real Makefile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

FAKE_VIGIL = """#!/bin/sh
echo "$*" >> "$LOG"
if [ "$1" = train ]; then
  while [ $# -gt 0 ]; do if [ "$1" = --out ]; then mkdir -p "$2" && echo '{}' > "$2/manifest.json"; fi; shift; done
fi
"""


def _fake_venv(root: Path) -> Path:
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("vigil", "python"):
        tool = venv / "bin" / name
        tool.write_text(FAKE_VIGIL)
        tool.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: `setup` has nothing to do
    return venv


def _trained(log: Path) -> list[str]:
    """`--out` folder names of the `train` calls, in order."""
    outs = []
    for line in log.read_text().splitlines():
        args = line.split()
        if args[0] == "train":
            outs.append(Path(args[args.index("--out") + 1]).name)
    return outs


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_resume_trains_only_missing_bundles(tmp_path: Path) -> None:
    venv, zoo, log = _fake_venv(tmp_path), tmp_path / "zoo", tmp_path / "calls.log"
    (zoo / "deterministic-seed0").mkdir(parents=True)
    (zoo / "deterministic-seed0" / "manifest.json").write_text("{}")  # finished
    (zoo / "ensemble-seed0").mkdir()  # cut short: weights may be there, the manifest is not
    args = ["make", "-s", "results", f"VENV={venv}", f"ZOO={zoo}", "SEEDS=0", "METHODS=deterministic mc_dropout ensemble"]
    env = {**os.environ, "LOG": str(log)}

    subprocess.run([*args, "RESUME=1"], cwd=REPO, env=env, check=True, capture_output=True)
    assert _trained(log) == ["mc_dropout-seed0", "ensemble-seed0"]
    calls = log.read_text()
    assert "evaluate" in calls and "results_doc" in calls  # the tables are still made

    log.unlink()
    subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True)
    assert _trained(log) == ["deterministic-seed0", "mc_dropout-seed0", "ensemble-seed0"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_results_ood_measures_the_shipped_model_and_updates_only_its_section(tmp_path: Path) -> None:
    venv, zoo, log, page = _fake_venv(tmp_path), tmp_path / "zoo", tmp_path / "calls.log", tmp_path / "results.md"
    args = ["make", "-s", "results-ood", f"VENV={venv}", f"ZOO={zoo}", f"RESULTS_DOC={page}"]
    subprocess.run(args, cwd=REPO, env={**os.environ, "LOG": str(log)}, check=True, capture_output=True)
    calls = [line.split() for line in log.read_text().splitlines()]
    assert _trained(log) == []  # nothing is retrained
    assert calls[0][:2] == ["evaluate-ood", "models/bundles/default"] and calls[0][calls[0].index("--out") + 1] == f"{zoo}/ood.json"
    assert calls[1] == ["-m", "training.results_doc", "--ood", f"{zoo}/ood.json", "--update-ood", "--out", str(page)]
