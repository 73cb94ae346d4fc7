"""The `vigil evaluate-ood` results as markdown: a summary table, the full table, the served figures."""

from __future__ import annotations

from typing import Any

METRICS = ("auroc", "fpr95", "detection_error", "aupr_in", "aupr_out")


def _risk(percent: float | None) -> str:
    """A selective risk in percent; none over no accepted prediction."""
    return "undefined (nothing accepted)" if percent is None else f"{percent:.2f}%"


def msp_gains(res: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each scorer's AUROC gain over MSP vs Fashion-MNIST with its interval; {} for results without them."""
    return dict(res.get("vs_msp", {}).get("fashion_mnist", {}))


def markdown(res: dict[str, Any]) -> str:
    """A summary (AUROC / FPR95 per set) and the full table, in markdown."""
    sets = list(res["ood"])
    scorers = list(res["ood"][sets[0]])
    lines = ["| scorer | " + " | ".join(f"{s} AUROC / FPR95" for s in sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for sc in scorers:
        cells = [f"{res['ood'][s][sc]['auroc']:.2f} / {res['ood'][s][sc]['fpr95']:.2f}" for s in sets]
        lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    lines += ["", "| OOD set | scorer | AUROC % ↑ | FPR95 % ↓ | detection error % ↓ | AUPR-In % ↑ | AUPR-Out % ↑ |", "|---|---|---|---|---|---|---|"]
    for s in sets:
        for sc in scorers:
            lines.append(f"| {s} | {sc} | " + " | ".join(f"{res['ood'][s][sc][m]:.2f}" for m in METRICS) + " |")
    gains = msp_gains(res)
    if gains:
        lines += ["", "AUROC gain over msp vs Fashion-MNIST, paired bootstrap 95 % interval (an interval spanning 0: no evidence either way):", ""]
        lines += ["| scorer | gain (points) | 95 % CI |", "|---|---|---|"]
        lines += [f"| {sc} | {g['delta_auroc']:+.2f} | {g['ci95_low']:+.2f} to {g['ci95_high']:+.2f} |" for sc, g in gains.items()]
    sv = res["served"]
    lines += [
        "",
        f"Served gate ({sv['ood_gate']['scorer']}, threshold {sv['ood_gate']['threshold']:.4g}): passes "
        f"{sv['ood_gate']['id_test_pass_rate']:.2f}% of MNIST test; rejects "
        + ", ".join(f"{v:.2f}% of {k}" for k, v in sv["ood_rejected"].items())
        + ". The generated sets go to the model as tensors (as through /v2); an inverted digit "
        "uploaded as an image (/v1) is first turned back to white on black by the bundle's "
        "`auto_invert`, and is then classified like any digit, not rejected.",
        (
            f"Failure threshold ({sv['selective']['failure_scorer']}) on MNIST test: selective risk "
            f"{_risk(sv['selective']['test_risk'])} at coverage {sv['selective']['test_coverage']:.2f}% "
            f"(validation: {_risk(sv['selective']['validation_risk'])} at {sv['selective']['validation_coverage']:.2f}%)."
        ),
    ]
    if res.get("ood_dir_unreadable"):
        skipped = res["ood_dir_unreadable"]
        shown = ", ".join(str(f) for f in skipped[:5]) + (f" and {len(skipped) - 5} more (all in the --out JSON)" if len(skipped) > 5 else "")
        lines.append(f"--ood-dir: {len(skipped)} unreadable file(s) skipped: {shown}.")
    return "\n".join(lines) + "\n"
