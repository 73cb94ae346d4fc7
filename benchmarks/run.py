"""The issue-6 benchmark in one run: `python -m benchmarks.run` (5-8 minutes on 2 cores).

1. ceiling: in-process pipeline throughput at batch 1, 8, 64, 256 (no HTTP);
2. service: `vigil serve` under a separate load-generator process at concurrency 1, 8, 64,
   request log to SQLite on;
3. naive: the same app and weights, one image per forward, members in a Python loop;
4. ratios and the targets, printed as tables and written as JSON (`--out`).

Configurations: the shipped default bundle, and a 5-member packed ensemble with ODIN.
Without `--ensemble DIR` the ensemble is untrained (timing needs no trained weights).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.bundles import single_msp, untrained_ensemble
from benchmarks.ceiling import ceiling
from benchmarks.report import ratios, render, targets
from benchmarks.serve import measure
from service.settings import DEFAULT_MODEL_DIR, Settings


def write_images(folder: Path, n: int = 64) -> Path:
    """n different 28x28 grayscale PNGs (noise: decoding costs the same as for digits)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(buf, "PNG")
        (folder / f"{i:03d}.png").write_bytes(buf.getvalue())
    return folder


def main(args: argparse.Namespace) -> dict[str, Any]:
    s = Settings()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    ens = args.ensemble or untrained_ensemble(work / "ensemble5_odin", members=5, ood="odin")
    bundles = {
        "default": DEFAULT_MODEL_DIR,
        "single_msp": single_msp(work / "single_msp"),
        "ensemble5_msp": untrained_ensemble(work / "ensemble5_msp", members=5, ood="msp"),
        "ensemble5_odin": ens,
    }
    r: dict[str, Any] = {"ceiling": {}, "service": {}, "naive": {}}
    for name, path in bundles.items():
        variants = name in ("default", "ensemble5_odin")
        r["ceiling"][name] = ceiling(path, s.torch_threads, s.inference_chunk_size, args.seconds, variants, args.repeats)
        print(f"ceiling {name}: {r['ceiling'][name]['service_path']}", flush=True)
    images = write_images(work / "images")
    for name in ("default", "ensemble5_odin"):
        r["service"][name] = measure(bundles[name], False, work, images, [1, 8, 64], args.duration, args.warmup)
        print(f"service {name}: done", flush=True)
        r["naive"][name] = measure(bundles[name], True, work, images, [1, 64], args.duration, args.warmup)
        print(f"naive {name}: done", flush=True)
    q = ratios(r)
    r["ratios"] = q
    r["targets"] = [{"target": n, "measured": v, "op": op, "goal": g} for n, v, op, g in targets(r, q)]
    r["meta"] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "ensemble_bundle": str(args.ensemble) if args.ensemble else "untrained 5-member PackedEnsemble + ODIN (timing only)",
        "settings": {k: getattr(s, k) for k in ("torch_threads", "batch_max_size", "batch_max_wait_ms", "inference_chunk_size", "channels_last")},
        "duration_s": args.duration,
        "ceiling": f"median of {args.repeats} measurements of {args.seconds:g} s per point",
    }
    print(render(r, q, targets(r, q)))
    return r


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    p.add_argument("--ensemble", type=Path, default=None, help="a trained ensemble bundle with ODIN (default: untrained)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per load level")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each load level")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per in-process ceiling measurement")
    p.add_argument("--repeats", type=int, default=3, help="measurements per ceiling point (the median is kept)")
    result = main(p.parse_args())
    p.parse_args().out.write_text(json.dumps(result, indent=2, default=str) + "\n")
