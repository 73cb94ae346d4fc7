"""`.ci/audit.py` (make audit): fails on fixable vulnerabilities, says so loudly when it cannot audit.

pip-audit is replaced by a stub that writes a canned report, so this needs no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "audit.py"


def run(tmp_path: Path, deps: list[dict] | None) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "pip-audit"
    report = json.dumps({"dependencies": deps, "fixes": []}) if deps is not None else None
    body = f"out = sys.argv[sys.argv.index('-o') + 1]\nopen(out, 'w').write({report!r})\n" if report else "sys.exit('network down')\n"
    stub.write_text(f"#!{sys.executable}\nimport sys\n{body}")
    stub.chmod(0o755)
    lock = tmp_path / "requirements.lock"
    lock.write_text("demo==1.0\n")
    return subprocess.run([sys.executable, str(SCRIPT), str(lock), "--pip-audit", str(stub)], check=False, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("deps", "rc", "says"),
    [
        ([{"name": "demo", "version": "1.0", "vulns": []}], 0, "no known vulnerability"),
        ([{"name": "demo", "version": "1.0", "vulns": [{"id": "GHSA-x", "fix_versions": ["1.1"]}]}], 1, "VULNERABLE: demo 1.0: GHSA-x (fixed in 1.1)"),
        ([{"name": "demo", "version": "1.0", "vulns": [{"id": "GHSA-y", "fix_versions": []}]}], 0, "no fix released yet"),
        ([{"name": "demo", "version": "1.0", "skip_reason": "Dependency not found on PyPI"}], 3, "DEPENDENCY AUDIT DID NOT RUN"),
        (None, 3, "NOTHING WAS CHECKED"),
    ],
    ids=["clean", "fixable", "unfixed", "no-data", "tool-failed"],
)
def test_audit_outcomes(tmp_path: Path, deps: list[dict] | None, rc: int, says: str) -> None:
    done = run(tmp_path, deps)
    assert done.returncode == rc, done.stdout + done.stderr
    assert says in done.stdout
