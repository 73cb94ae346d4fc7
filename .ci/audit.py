"""Audit the locked dependencies for known vulnerabilities: `make audit` (stdlib only).

Runs pip-audit over requirements.lock (exact pins, no resolution) against PyPI's
advisory data, then OSV's. Exit codes:
  0  every locked package was audited, nothing with a fix available was found
  1  a known vulnerability with a fixed version exists: upgrade it (the fix is printed)
  3  the vulnerability data could not be reached: NOTHING WAS AUDITED (said loudly)
Vulnerabilities without any fixed release are printed but do not fail the audit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

UNREACHABLE = 3


def pip_audit(tool: str, lock: Path, service: str) -> list[dict[str, Any]] | None:
    """pip-audit's per-package results, or None when it produced none (network, tool error)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "audit.json"
        cmd = [tool, "-r", str(lock), "--no-deps", "--disable-pip", "--progress-spinner", "off", "-s", service, "-f", "json", "-o", str(out)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
        if not out.exists():
            last = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
            print(f"pip-audit -s {service} failed: {last[0][:300]}", file=sys.stderr)
            return None
        return list(json.loads(out.read_text()).get("dependencies", []))


def banner(lines: list[str]) -> None:
    print("\n" + "!" * 78)
    for line in lines:
        print(f"!!  {line}")
    print("!" * 78 + "\n")


def main(args: argparse.Namespace) -> int:
    deps: list[dict[str, Any]] = []
    for service in ("pypi", "osv"):
        deps = pip_audit(args.pip_audit, args.lock, service) or []
        audited = [d for d in deps if "skip_reason" not in d]
        if audited:
            break
        print(f"pip-audit: the {service} vulnerability service answered for none of the locked packages")
    else:
        banner(["DEPENDENCY AUDIT DID NOT RUN: no vulnerability data source answered", "(PyPI's per-release JSON API and OSV). NOTHING WAS CHECKED.", "Run `make audit` where https://pypi.org or https://api.osv.dev is reachable."])
        return UNREACHABLE
    skipped = [d["name"] for d in deps if "skip_reason" in d]
    fixable = [(d, v) for d in audited for v in d.get("vulns", []) if v.get("fix_versions")]
    unfixed = [(d, v) for d in audited for v in d.get("vulns", []) if not v.get("fix_versions")]
    print(f"audited {len(audited)} locked packages with {service}; {len(skipped)} not found there: {', '.join(skipped) or 'none'}")
    for d, v in unfixed:
        print(f"  known, no fix released yet: {d['name']} {d['version']}: {v['id']}")
    for d, v in fixable:
        print(f"  VULNERABLE: {d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v['fix_versions'])})")
    if fixable:
        print("upgrade these in pyproject.toml, reinstall, `make test`, then `make lock`")
        return 1
    print("no known vulnerability with an available fix")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lock", type=Path, nargs="?", default=Path("requirements.lock"))
    p.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable")
    sys.exit(main(p.parse_args()))
