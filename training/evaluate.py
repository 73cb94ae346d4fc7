"""`vigil evaluate BUNDLE...`: the papers' metrics on MNIST test, per bundle and over seeds.

Classification (accuracy, NLL, Brier, ECE with 15 bins) before and after temperature
scaling (Guo et al.), and misclassification detection for every confidence score the
bundle offers (ConfidNet paper definitions, training/metrics.py), plus the selective
risk and coverage of the served failure threshold, and the conformal prediction sets'
coverage and size as served (`aps_sets` at the bundle's quantile). Bundles whose manifests share a
name are seeds of one configuration and are reported as mean ± std. The comparisons
the targets make (ConfidNet against MCP, NLL against the deterministic baseline) also get
a paired bootstrap interval over the test images (`training.paired`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.bundle import MANIFEST, Bundle, load_bundle, read_manifest
from models.conformal import aps_sets
from models.manifest import Manifest
from models.scorers.base import ScoreInput
from models.scorers.entropy import MutualInformation, PredictiveEntropy
from models.scorers.msp import MaxSoftmax
from models.usage import UsageError
from training import metrics, paired
from training.data import Split, load_mnist
from training.loop import features_and_logits, normalise
from training.options import check_output_files, positive_int


@dataclass(frozen=True)
class PerImage:
    """What the paired comparisons need of one bundle, image by image."""

    seed: int | None
    correct: np.ndarray
    #: After temperature scaling, as the table's NLL.
    nll: np.ndarray
    #: Failure score by name (higher = more likely wrong).
    failure: dict[str, np.ndarray]


#: A served failure scorer's row in the tables, where the names differ.
SERVED_ROW = {"msp": "mcp"}


def training_seed(manifest: Manifest) -> int | None:
    """The seed the bundle was trained with (`vigil train` records it), or None."""
    return manifest.metrics.get("training", {}).get("seed")


def evaluate_bundle(bundle: Bundle, test: Split) -> tuple[dict[str, Any], PerImage]:
    """All metrics of one bundle on `test` (numbers in %, NLL/Brier raw, AURC x1000), and its per-image values."""
    feats, logits = features_and_logits(bundle.model, test.x)
    t = bundle.manifest.temperature
    raw = torch.softmax(logits, -1).mean(0)
    cal = torch.softmax(logits / t, -1).mean(0)
    correct = cal.argmax(-1) == test.y
    inp = ScoreInput(bundle.model, normalise(test.x), logits, feats, t)
    scorers = {"mcp": MaxSoftmax(), "entropy": PredictiveEntropy()}
    if logits.shape[0] > 1:
        scorers["mutual_information"] = MutualInformation()
    # The served scorer takes its own row (MCP's is named msp in manifests), so it is scored
    # once, for both its row and the served threshold below.
    served_row = SERVED_ROW.get(bundle.manifest.failure.name, bundle.manifest.failure.name)
    scorers[served_row] = bundle.failure_scorer
    scores = {name: s.score(inp) for name, s in scorers.items()}
    failure = {name: metrics.misclassification(score, correct) for name, score in scores.items()}
    served = scores[served_row]
    accepted = served <= bundle.manifest.failure.threshold
    per_image = PerImage(
        seed=training_seed(bundle.manifest),
        correct=correct.numpy(),
        nll=metrics.log_losses(cal, test.y).double().numpy(),
        failure={name: score.double().numpy() for name, score in scores.items()},
    )
    result = {
        "name": bundle.manifest.name,
        "method": bundle.manifest.method,
        "before_temperature": metrics.classification(raw, test.y),
        "after_temperature": metrics.classification(cal, test.y),
        "failure_detection": failure,
        "selective": {
            # The option the threshold was fitted for, and the risk it reached on validation.
            "target_risk": None if bundle.manifest.failure.target is None else 100 * bundle.manifest.failure.target,
            "validation_risk": percent_or_none(bundle.manifest.metrics.get("validation", {}).get("selective_risk", float("nan"))),
            # Undefined (null, "–" in the table) when nothing is accepted: not a perfect 0.
            "test_risk": 100 * float((~correct[accepted]).float().mean()) if accepted.any() else None,
            "test_coverage": 100 * float(accepted.float().mean()),
        },
        # The sets as served (the pipeline's rule on the calibrated mean probabilities).
        "conformal": {"alpha": 100 * bundle.manifest.conformal.alpha, **metrics.prediction_sets(aps_sets(cal, bundle.manifest.conformal.qhat), test.y)},
        "training_seconds": bundle.manifest.training_seconds,
        # Part of it spent training a reused network (`--base-bundle`), counted in that bundle's row.
        "reused_seconds": float(bundle.manifest.metrics.get("base_bundle", {}).get("training_seconds", 0.0)),
    }
    return result, per_image


def baseline_of(groups: dict[str, tuple[str, list[PerImage]]], asked: str | None) -> str | None:
    """The model NLL comparisons are measured against: `asked` (`--baseline`, checked by
    `check_names` before any work), else the one deterministic model; None, said on stderr,
    when several are (a `--method confidnet` bundle is a deterministic network too) or none is."""
    if asked is not None:
        return asked
    bases = sorted(n for n, (method, _) in groups.items() if method == "deterministic")
    if len(bases) > 1:
        print(f"NLL comparisons skipped: {len(bases)} deterministic models ({', '.join(bases)}); name one with --baseline", file=sys.stderr)
    return bases[0] if len(bases) == 1 else None


def comparisons(groups: dict[str, tuple[str, list[PerImage]]], count: int = paired.RESAMPLES, baseline: str | None = None) -> dict[str, dict[str, Any]]:
    """The targets' comparisons with paired intervals, by model name (`training.paired`).

    - ``confidnet_vs_mcp``: a ConfidNet head's AUPR-Error minus MCP's, on the same network;
    - ``nll_vs_baseline``: the model's NLL minus the baseline's (`baseline_of`), seed by
      seed (only when every seed has a counterpart among the baseline's).
    `groups`: model name -> (method, its seeds' per-image values).
    """
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for name, (_, runs) in groups.items():
        if all("confidnet" in r.failure for r in runs):
            diffs = [paired.aupr_error_gain(r.failure["confidnet"], r.failure["mcp"], r.correct, count) for r in runs]
            out[name]["confidnet_vs_mcp"] = {"seeds": [r.seed for r in runs], "per_seed": [d.delta for d in diffs], **paired.pooled(diffs)}
    base = baseline_of(groups, baseline)
    if base is not None:
        by_seed = {r.seed: r for r in groups[base][1] if r.seed is not None}
        for name, (_, runs) in groups.items():
            if name != base and runs and all(r.seed in by_seed for r in runs):
                diffs = [paired.mean_difference(r.nll, by_seed[r.seed].nll, count) for r in runs]
                out[name]["nll_vs_baseline"] = {
                    "baseline": base,
                    "seeds": [r.seed for r in runs],
                    "per_seed": [d.delta for d in diffs],
                    **paired.pooled(diffs),
                }
    return dict(out)


def comparisons_markdown(comps: dict[str, dict[str, Any]]) -> str:
    """The comparisons as a table: mean difference over seeds and its 95 % interval."""
    lines = ["| model | comparison | seeds | difference (mean over seeds) | 95 % CI |", "|---|---|---|---|---|"]
    for name, c in comps.items():
        if "confidnet_vs_mcp" in c:
            d = c["confidnet_vs_mcp"]
            lines.append(
                f"| {name} | AUPR-Error %, ConfidNet − MCP | {len(d['seeds'])} | {d['delta']:+.2f} | {d['ci95_low']:+.2f} to {d['ci95_high']:+.2f} |"
            )
        if "nll_vs_baseline" in c:
            d = c["nll_vs_baseline"]
            lines.append(
                f"| {name} | NLL − {d['baseline']}'s | {len(d['seeds'])} | {d['delta']:+.4f} | {d['ci95_low']:+.4f} to {d['ci95_high']:+.4f} |"
            )
    return "\n".join(lines) + "\n"


def percent_or_none(fraction: float | None) -> float | None:
    """A manifest's fraction as a percent; None stays None (a risk over no accepted input)."""
    return None if fraction is None else 100 * float(fraction)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, int | float):
            out[f"{prefix}{k}"] = float(v)
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and std (0 for one run) of every numeric metric over seeds."""
    flat = [_flatten({k: v for k, v in r.items() if k != "seed"}) for r in runs]  # a seed is no metric
    shared = set.intersection(*(set(f) for f in flat))
    return {
        k: {"mean": statistics.fmean(f[k] for f in flat), "std": statistics.stdev([f[k] for f in flat]) if len(flat) > 1 else 0.0}
        for k in flat[0]
        if k in shared
    }


def _fmt(a: dict[str, dict[str, float]], key: str, digits: int = 2) -> str:
    if key not in a:
        return "–"
    m, s = a[key]["mean"], a[key]["std"]
    return f"{m:.{digits}f} ± {s:.{digits}f}" if s else f"{m:.{digits}f}"


def markdown(groups: dict[str, tuple[str, int, dict[str, dict[str, float]]]]) -> str:
    """Three tables: classification and calibration, before and after temperature scaling (the
    served figures are after; test risk and coverage are the served threshold's);
    misclassification detection per score; the conformal sets' coverage and size."""
    lines = [
        "| model | method | seeds | temperature | accuracy % | NLL | Brier | ECE % | test risk % | coverage % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (method, n, a) in groups.items():
        for when in ("before", "after"):
            p = f"{when}_temperature."
            served = f"{_fmt(a, 'selective.test_risk')} | {_fmt(a, 'selective.test_coverage')}" if when == "after" else "– | –"
            lines.append(
                f"| {name} | {method} | {n} | {when} | {_fmt(a, p + 'accuracy')} | {_fmt(a, p + 'nll', 4)} "
                f"| {_fmt(a, p + 'brier', 4)} | {_fmt(a, p + 'ece')} | {served} |"
            )
    lines += ["", "| model | score | FPR95 % ↓ | AUPR-Error % ↑ | AUPR-Success % ↑ | AUROC % ↑ | AURC ×1000 ↓ |", "|---|---|---|---|---|---|---|"]
    for name, (_, _, a) in groups.items():
        scores = sorted({k.split(".")[1] for k in a if k.startswith("failure_detection.")})
        for s in scores:
            p = f"failure_detection.{s}."
            lines.append(
                f"| {name} | {s} | {_fmt(a, p + 'fpr95')} | {_fmt(a, p + 'aupr_error')} | {_fmt(a, p + 'aupr_success')} "
                f"| {_fmt(a, p + 'auroc')} | {_fmt(a, p + 'aurc')} |"
            )
    lines += ["", "| model | α % | set coverage % (≥ 100 − α) | mean set size | single-class sets % |", "|---|---|---|---|---|"]
    for name, (_, _, a) in groups.items():
        lines.append(
            f"| {name} | {_fmt(a, 'conformal.alpha')} | {_fmt(a, 'conformal.coverage')} | {_fmt(a, 'conformal.mean_size', 3)} "
            f"| {_fmt(a, 'conformal.singletons')} |"
        )
    return "\n".join(lines) + "\n"


def bundle_folders(paths: list[str]) -> list[Path]:
    """The bundles named: a folder with a manifest is one; a folder of bundles (what
    `vigil train --seeds N` writes: OUT/seed<k>) stands for every bundle directly in it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / MANIFEST).is_file():
            found = [p]
        else:
            found = sorted(d for d in p.iterdir() if (d / MANIFEST).is_file()) if p.is_dir() else []
        if not found:
            raise UsageError(f"{p} is neither a bundle nor a folder of bundles")
        out += found
    # A bundle named twice (say DIR and DIR/seed0) counts once, not as two seeds.
    return list({p.resolve(): p for p in out}.values())


def check_names(manifests: list[Manifest], seeds: int | None, baseline: str | None) -> None:
    """From the manifests alone, before any bundle is evaluated: bundles sharing a name are
    averaged as seeds of one model, so they must be one method, each of its own seed (two
    bundles of seed 0, or a deterministic and an MC dropout network both named alike, were
    averaged without a word); `--seeds N` needs every model with exactly N of them;
    `--baseline` a model's name."""
    by_name: dict[str, list[int | None]] = defaultdict(list)
    methods: dict[str, set[str]] = defaultdict(set)
    for m in manifests:
        by_name[m.name].append(training_seed(m))
        methods[m.name].add(m.method)
    if baseline is not None and baseline not in by_name:
        raise UsageError(f"--baseline {baseline!r} is none of the models evaluated: {', '.join(sorted(by_name))}")
    for name, got in by_name.items():
        if len(methods[name]) > 1:
            raise UsageError(f"bundles named {name!r} are of different methods ({', '.join(sorted(methods[name]))}): only seeds of one model may share a name")
        known = [s for s in got if s is not None]
        if len(set(known)) != len(known):
            raise UsageError(f"model {name!r} has several bundles of one training seed ({sorted(known)}): they are not seeds of it; give them different names")
        if seeds and (len(got) != seeds or len(set(got)) != len(got)):  # unrecorded seeds (None) cannot be told apart
            raise UsageError(f"--seeds {seeds}: model {name!r} has {len(got)} bundle(s) with training seeds {got}")


def run(args: argparse.Namespace) -> int:
    check_output_files(out=args.out, markdown=args.markdown)
    paths = bundle_folders(args.bundles)
    check_names([read_manifest(p) for p in paths], args.seeds, args.baseline)
    test = load_mnist(Path(args.data_dir), train=False, download=args.download).head(args.limit)
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_image: dict[str, list[PerImage]] = defaultdict(list)
    for path in paths:
        result, values = evaluate_bundle(load_bundle(path), test)
        result.update(seed=values.seed, bundle=str(path))  # which run is which, in the JSON
        by_name[result["name"]].append(result)
        per_image[result["name"]].append(values)
    groups = {name: (runs[0]["method"], len(runs), aggregate(runs)) for name, runs in by_name.items()}
    comps = comparisons({name: (runs[0]["method"], per_image[name]) for name, runs in by_name.items()}, args.resamples, args.baseline)
    table = markdown(groups) + ("\n" + comparisons_markdown(comps) if comps else "")
    print(table)
    if args.out:
        out = {"runs": by_name, "aggregate": {k: g[2] for k, g in groups.items()}, "comparisons": comps}
        Path(args.out).write_text(json.dumps(out, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


def register(sub: argparse._SubParsersAction, data_dir: str) -> None:
    p = sub.add_parser("evaluate", help="papers' metrics of bundles on MNIST test (mean ± std over seeds)")
    p.add_argument(
        "bundles", nargs="+", help="bundle folders, or folders of them (vigil train --seeds N's OUT); bundles sharing a manifest name are seeds of one model"
    )
    p.add_argument(
        "--seeds", type=positive_int, default=None, help="expect N training seeds of every model (mean ± std over them); refuses fewer, more or repeated seeds"
    )
    p.add_argument(
        "--baseline", default=None, help="model name the NLL comparisons are measured against (default: the one deterministic model)"
    )
    p.add_argument("--data-dir", default=data_dir, help="torchvision root holding MNIST/raw (VIGIL_DATA_DIR)")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST (needs internet)")
    p.add_argument("--out", default=None, help="write all numbers as JSON")
    p.add_argument("--markdown", default=None, help="write the tables as markdown")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate on the first N test images (tests)")
    p.add_argument("--resamples", type=positive_int, default=paired.RESAMPLES, help="bootstrap replicates of each comparison's interval")
    p.set_defaults(func=run)
