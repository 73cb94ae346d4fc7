"""Write docs/results.md from `vigil evaluate` and `vigil evaluate-ood` JSON (`make results`).

The verdict column of every target is computed here from the measured numbers, so the
document cannot claim a target that the run did not reach.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from training.evaluate import comparisons_markdown
from training.evaluate import markdown as zoo_markdown
from training.ood_report import markdown as ood_markdown
from training.ood_report import msp_gains

#: Corbière et al., NeurIPS 2019, Table 1, MNIST SmallConvNet: FPR95 / AUPR-Error / AUROC.
CONFIDNET_PAPER = {"MCP": (5.56, 35.05, 98.63), "MC Dropout": (5.26, 38.50, 98.65), "ConfidNet": (3.33, 45.89, 98.82)}
#: Issue 3's training budget: every method of the zoo, on the 2-core CPU, in wall-clock minutes.
BUDGET_MINUTES = 30.0


def _m(agg: dict[str, Any], name: str, key: str) -> float:
    return float(agg.get(name, {}).get(key, {}).get("mean", float("nan")))


def _ok(flag: bool) -> str:
    return "met" if flag else "**missed**"


def _beats(scorer: dict[str, float], msp: dict[str, float]) -> tuple[bool, bool]:
    """Issue 4's comparison: (higher AUROC than MSP, lower FPR95 than MSP)."""
    return scorer["auroc"] > msp["auroc"], scorer["fpr95"] < msp["fpr95"]


def _interval(comp: dict[str, Any] | None, digits: int, word: str = "difference", key: str = "delta") -> tuple[str, str]:
    """(" (difference d, 95 % CI lo to hi)", " (within noise: ...)" or "") of a paired comparison, if measured.

    `word` / `key`: how the point difference is named on the page and in `comp`
    (`vigil evaluate`'s comparisons: delta; `vigil evaluate-ood`'s AUROC gains: delta_auroc).
    """
    if not comp:
        return "", ""
    f = f"+.{digits}f"
    ci = f" ({word} {comp[key]:{f}}, 95 % CI {comp['ci95_low']:{f}} to {comp['ci95_high']:{f}})"
    # An interval that spans 0: the test set cannot tell the two apart, whichever way the means fell.
    return ci, " (within noise: the interval spans 0)" if comp["ci95_low"] <= 0 <= comp["ci95_high"] else ""


def zoo_targets(agg: dict[str, Any], comps: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The issue's targets with verdicts; `comps`: `vigil evaluate`'s paired comparisons, for their intervals."""
    comps = comps or {}
    names = sorted(agg)
    lines = ["| target | measured (mean over seeds) | verdict |", "|---|---|---|"]
    for n in names:
        acc, ece = _m(agg, n, "after_temperature.accuracy"), _m(agg, n, "after_temperature.ece")
        lines.append(f"| {n}: accuracy ≥ 99.2 % | {acc:.2f} % | {_ok(acc >= 99.2)} |")
        lines.append(f"| {n}: ECE after temperature ≤ 0.5 % | {ece:.2f} % | {_ok(ece <= 0.5)} |")
        cn_aupr = _m(agg, n, "failure_detection.confidnet.aupr_error")
        if not math.isnan(cn_aupr):  # the bundle serves ConfidNet
            mcp_aupr = _m(agg, n, "failure_detection.mcp.aupr_error")
            cn_fpr = _m(agg, n, "failure_detection.confidnet.fpr95")
            ci, noise = _interval(comps.get(n, {}).get("confidnet_vs_mcp"), 2)
            lines.append(f"| {n}: ConfidNet AUPR-Error > MCP's | {cn_aupr:.2f} vs {mcp_aupr:.2f}{ci} | {_ok(cn_aupr > mcp_aupr)}{noise} |")
            lines.append(f"| {n}: ConfidNet AUPR-Error ≥ 45.89 (paper) | {cn_aupr:.2f} | {_ok(cn_aupr >= 45.89)} |")
            lines.append(f"| {n}: ConfidNet FPR95 ≤ 3.33 (paper) | {cn_fpr:.2f} | {_ok(cn_fpr <= 3.33)} |")
    # Judged by method, not by name: a renamed bundle keeps its method.
    base = next((n for n in names if agg[n].get("method") == "deterministic"), None)
    if base:
        for n in names:
            if agg[n].get("method") in ("ensemble", "mc_dropout"):
                a, b = _m(agg, n, "after_temperature.nll"), _m(agg, base, "after_temperature.nll")
                comp = comps.get(n, {}).get("nll_vs_baseline")
                ci, noise = _interval(comp if comp and comp["baseline"] == base else None, 4)
                lines.append(f"| {n}: NLL below {base}'s | {a:.4f} vs {b:.4f}{ci} | {_ok(a < b)}{noise} |")
    return lines


def ood_targets(ood: dict[str, Any]) -> list[str]:
    """The OOD targets of issue 4, judged on the same model and run."""
    r = ood["ood"]
    fm = r["fashion_mnist"]
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for name in ("odin", "energy"):
        if name in fm:
            a, f = fm[name], fm["msp"]
            auroc_ok, fpr_ok = _beats(a, f)
            ci, noise = _interval(msp_gains(ood).get(name), 2, "gain", "delta_auroc")
            lines.append(f"| {name} beats msp in AUROC vs Fashion-MNIST | {a['auroc']:.2f} vs {f['auroc']:.2f}{ci} | {_ok(auroc_ok)}{noise} |")
            lines.append(f"| {name} beats msp in FPR95 vs Fashion-MNIST | {a['fpr95']:.2f} vs {f['fpr95']:.2f} | {_ok(fpr_ok)} |")
    best = max(fm, key=lambda k: fm[k]["auroc"])
    b = fm[best]
    lines.append(f"| best scorer ({best}) vs Fashion-MNIST: AUROC ≥ 99, FPR95 ≤ 5 | {b['auroc']:.2f} / {b['fpr95']:.2f} | {_ok(b['auroc'] >= 99 and b['fpr95'] <= 5)} |")
    for noise in ("uniform_noise", "gaussian_noise"):
        if noise in r:
            lines.append(f"| best scorer ({best}) vs {noise}: AUROC ≥ 99 | {r[noise][best]['auroc']:.2f} | {_ok(r[noise][best]['auroc'] >= 99)} |")
    return lines


def zoo_ood(runs: list[dict[str, Any]], ood_set: str = "fashion_mnist") -> list[str]:
    """ODIN and energy against MSP on other models of the zoo, MNIST vs `ood_set`, mean over seeds.

    The same comparison as `ood_targets`, one row per model and scorer, so a reader sees
    whether the shipped model's outcome holds beyond it.
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_model.setdefault(r["model"]["name"], []).append(r)
    lines = ["| model | seeds | scorer | AUROC % ↑ | FPR95 % ↓ | beats msp in AUROC | beats msp in FPR95 |", "|---|---|---|---|---|---|---|"]
    for name, rs in sorted(by_model.items()):
        def mean(scorer: str, rs: list[dict[str, Any]] = rs) -> dict[str, float]:
            return {k: sum(r["ood"][ood_set][scorer][k] for r in rs) / len(rs) for k in ("auroc", "fpr95")}

        msp = mean("msp")
        lines.append(f"| {name} | {len(rs)} | msp | {msp['auroc']:.2f} | {msp['fpr95']:.2f} | | |")
        for scorer in ("odin", "energy"):
            if all(scorer in r["ood"][ood_set] for r in rs):
                m = mean(scorer)
                auroc_ok, fpr_ok = _beats(m, msp)
                lines.append(f"| {name} | {len(rs)} | {scorer} | {m['auroc']:.2f} | {m['fpr95']:.2f} | {_ok(auroc_ok)} | {_ok(fpr_ok)} |")
    return lines


#: How temperature scaling is applied, and a caveat on the ensemble's seeds (issue 3's review).
TEMPERATURE_NOTE = [
    "Temperature scaling divides every sample's (member's) logits by one T fitted on validation NLL,",
    "then averages the softmaxes: for a single network that is Guo et al.'s method exactly; for a",
    "sampled model it can move the accuracy a little. Sampled models (MC dropout, Laplace,",
    "variational) draw their masks or weights from the bundle's seed, the same for every image,",
    "as they are served. The seeds are 0, 10 and 20: the ensemble of",
    "seed s seeds its members 1-4 with s·1000 + 1-4, so with seeds 0-2 two members of the seed-0",
    "ensemble shared their start with networks of the other seeds. The last table: the conformal",
    "prediction sets as served, their coverage of the true label (guaranteed ≥ 100 − α %) and size.",
]
#: How the targets' verdicts read a difference and its interval.
VERDICT_NOTE = [
    "A verdict goes by the sign of the mean difference, either way; `(within noise)` marks a met",
    "and a missed target alike when the interval spans 0: this test set cannot tell the two apart.",
]
ZOO_OOD_HEADING = "## ODIN and energy against MSP on the deterministic networks (MNIST test vs Fashion-MNIST test)"


def budget_target(total: float) -> str:
    """The training-budget row of the targets table: `total`, the page's per-model minutes summed, against the budget."""
    return f"| all methods: training ≤ {BUDGET_MINUTES:.0f} min on this 2-core CPU | {total:.1f} min | {_ok(total <= BUDGET_MINUTES)} |"


ZOO_HEADING = "## Calibration and misclassification detection (mean ± std over seeds)"
OOD_HEADING = "## Out-of-distribution detection (the shipped default model, every scorer, one run)"
#: The line `update_ood` adds to the page's introduction (replaced, never repeated, on the next update).
OOD_STAMP = "Except the shipped model's out-of-distribution section: measured again on its own (`make results-ood`), finished"


def ood_section(ood: dict[str, Any]) -> list[str]:
    """The page's section on the shipped model's OOD detection, as lines (its last ends with a newline)."""
    return [
        OOD_HEADING,
        "",
        "In-distribution (positive) = MNIST test. Details, criteria and discussion: [results_ood.md](results_ood.md).",
        "Hendrycks & Gimpel (ICLR 2017) report for the MSP baseline on MNIST: AUROC 85 vs notMNIST,",
        "90 vs Gaussian noise, 96 vs Omniglot. ODIN on the ensemble tempers the logits of its predictive",
        "distribution, log of the members' mean softmax (for one network, Liang et al.'s score exactly).",
        "",
        "### Targets",
        "",
        *ood_targets(ood),
        "",
        ood_markdown(ood),
    ]


def update_ood(page: str, ood: dict[str, Any], generated: str) -> str:
    """`page` with only its shipped-model OOD section rebuilt from `ood`, stamped with when.

    For a change that touches nothing but that section (the shipped bundle or an OOD
    scorer): `vigil evaluate-ood` of one bundle takes minutes, the whole zoo hours. The
    rest of the page stays byte for byte, and its introduction says which part is newer.
    """
    start = page.find(OOD_HEADING)
    if start < 0:
        raise ValueError("the page has no shipped-model OOD section to replace: run `make results`")
    nxt = page.find("\n## ", start + len(OOD_HEADING))
    end = len(page) if nxt < 0 else nxt
    page = page[:start] + "\n".join(ood_section(ood)) + "\n" + page[end:]
    lines = [line for line in page.split("\n") if not line.startswith(OOD_STAMP)]
    if ZOO_HEADING not in lines:  # the heading that closes the introduction, where the stamp goes
        raise ValueError(f"the page has no {ZOO_HEADING!r} heading to stamp before: run `make results`")
    intro_end = lines.index(ZOO_HEADING) - 1  # after the introduction, before its blank line
    lines.insert(intro_end, f"{OOD_STAMP} {generated}.")
    return "\n".join(lines)


def document(
    zoo: dict[str, Any],
    ood: dict[str, Any] | None,
    minutes: dict[str, float],
    ood_runs: list[dict[str, Any]] | None = None,
    generated: str | None = None,
) -> str:
    agg = zoo["aggregate"]
    total_minutes = sum(minutes.values())  # the table's last row and the budget verdict
    groups = {n: (runs[0]["method"], len(runs), agg[n]) for n, runs in zoo["runs"].items()}
    paper = ["| method (paper) | FPR95 % | AUPR-Error % | AUROC % |", "|---|---|---|---|"]
    paper += [f"| {k} | {v[0]} | {v[1]} | {v[2]} |" for k, v in CONFIDNET_PAPER.items()]
    out = [
        "# Results",
        "",
        "Regenerate everything on this page with `make results` (trains every method for 3 seeds,",
        "then runs `vigil evaluate` and `vigil evaluate-ood`, then this generator). All numbers are",
        "on MNIST's 10,000 test images; the models never saw them, and every threshold, temperature",
        "and scorer choice was fitted on held-out training images only.",
        *([f"Every table below comes from one run of it, finished {generated}."] if generated else []),
        "",
        ZOO_HEADING,
        "",
        "Definitions as in the ConfidNet paper: correct predictions are the positive class for",
        "FPR at 95 % TPR, AUPR-Success and AUROC; errors are positive for AUPR-Error. ECE uses",
        "15 equal-width bins. `test risk` / `coverage`: error rate among accepted predictions and",
        "share accepted, at the failure threshold fitted on validation for a 0.5 % target risk (the",
        "largest threshold meeting it there: a fit, not a bound, so test risk lands on either side of it).",
        "Brier: squared error to the one-hot label summed over the 10 classes (0 to 2), as Brier (1950)",
        "defined it; Lakshminarayanan et al. divide it by the number of classes, a tenth of these figures.",
        *TEMPERATURE_NOTE,
        "",
        zoo_markdown(groups),
        "Corbière et al. (NeurIPS 2019), Table 1, MNIST with their SmallConvNet:",
        "",
        *paper,
        "",
        "### Targets",
        "",
        *zoo_targets({**agg, **{n: {**agg[n], "method": g[0]} for n, g in groups.items()}}, zoo.get("comparisons")),
        *([budget_target(total_minutes)] if minutes else []),
        "",
    ]
    if zoo.get("comparisons"):
        out += [
            "Each difference above, with its interval: both sides measured on the same test images,",
            "1,000 paired bootstrap resamples of them, the seeds' differences averaged resample by",
            "resample (`training/paired.py`). The interval is the test set's sampling noise for these",
            "trained networks; the ± in the tables above is the spread over training seeds.",
            *VERDICT_NOTE,
            "",
            comparisons_markdown(zoo["comparisons"]),
        ]
    if minutes:
        out += [
            "### Training time on this 2-core CPU (from the manifests; the fastest seed, since other work",
            "on the machine only adds time; scorer fitting and, for ConfidNet, the head's training included;",
            "MC dropout and Laplace are built on the deterministic network, the ensemble takes it as member 0 and",
            "the variational network starts from its weights; that network's training counts in its row only)",
            "",
            "| model | minutes |",
            "|---|---|",
        ]
        out += [f"| {n} | {m:.1f} |" for n, m in minutes.items()] + [f"| all methods | {total_minutes:.1f} |", ""]
    if ood is not None:
        out += ood_section(ood)
    if ood_runs:
        out += [
            "",
            ZOO_OOD_HEADING,
            "",
            "Every scorer fitted on in-distribution data only, as above (ODIN: T = 1000, eps by the",
            "ID-only FGSM-proxy criterion); mean over the training seeds. These networks serve MSP as",
            "their OOD score; `vigil evaluate-ood` fits ODIN and energy on them for this table.",
            "",
            *zoo_ood(ood_runs),
        ]
    return "\n".join(out) + "\n"


def finished_at(paths: list[Path]) -> str:
    """When the run finished: the newest of its result files (not now, so a regenerated page keeps its run's time)."""
    newest = max(p.stat().st_mtime for p in paths)
    return dt.datetime.fromtimestamp(newest, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--zoo", help="JSON from `vigil evaluate` (required unless --update-ood)")
    p.add_argument("--ood", default=None, help="JSON from `vigil evaluate-ood`")
    p.add_argument("--ood-zoo", nargs="*", default=[], help="more `vigil evaluate-ood` JSONs (zoo models) for the cross-model table")
    p.add_argument("--out", required=True)
    p.add_argument("--update-ood", action="store_true", help="rewrite only the shipped-model OOD section of the existing --out page from --ood")
    args = p.parse_args(argv)
    if args.update_ood:
        if not args.ood:
            p.error("--update-ood needs --ood")
        out = Path(args.out)
        out.write_text(update_ood(out.read_text(), json.loads(Path(args.ood).read_text()), finished_at([Path(args.ood)])))
        return 0
    if not args.zoo:
        p.error("--zoo is required (or --update-ood with --ood)")
    zoo = json.loads(Path(args.zoo).read_text())
    ood = json.loads(Path(args.ood).read_text()) if args.ood else None
    minutes: dict[str, float] = {}
    for name, runs in zoo["runs"].items():
        # The fastest seed: other work sharing the 2 cores can only add time.
        # Own work only: MC dropout and Laplace reuse the deterministic network, whose
        # training is counted once, in its own row (and so once in the total).
        minutes[name] = min(r["training_seconds"] - r.get("reused_seconds", 0.0) for r in runs) / 60
    ood_runs = [json.loads(Path(f).read_text()) for f in args.ood_zoo]
    inputs = [Path(args.zoo), *([Path(args.ood)] if args.ood else []), *map(Path, args.ood_zoo)]
    Path(args.out).write_text(document(zoo, ood, minutes, ood_runs, finished_at(inputs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
