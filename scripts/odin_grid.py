"""ODIN's AUROC vs Fashion-MNIST over a grid of (T, eps), beside MSP's, for one bundle.

An analysis of what ODIN *could* reach on a model, not a way to choose its
hyperparameters: it looks at the OOD test set, which the served choice never does
(training/ood_select.py chooses on in-distribution data only). If no cell beats MSP,
no selection rule can make ODIN beat MSP on that model.

    python scripts/odin_grid.py [--model models/bundles/default] [--data-dir ../shared/datasets]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.bundle import load_bundle
from models.pipeline import Pipeline
from models.scorers.msp import MaxSoftmax
from models.scorers.odin import REDUCTIONS
from training.data import load_mnist
from training.metrics import ood_detection
from training.ood_select import LIANG_GRID_EPS, batch_scores, odin_scores_by_eps
from training.ood_sets import fashion_mnist

REPO = Path(__file__).resolve().parents[1]


def main(args: argparse.Namespace) -> None:
    bundle = load_bundle(args.model)
    model, pipe = bundle.model, Pipeline(bundle)
    std = bundle.manifest.input.std
    x_id = pipe.normalise(load_mnist(args.data_dir, train=False).x)
    x_ood = pipe.normalise(fashion_mnist(args.data_dir))
    t_cal = float(bundle.manifest.temperature)
    msp_id, msp_ood = (batch_scores({"msp": MaxSoftmax()}, model, x, t_cal, batch_size=1000)["msp"] for x in (x_id, x_ood))
    msp = ood_detection(msp_id, msp_ood)["auroc"]
    print(f"{bundle.manifest.name} v{bundle.manifest.version}: msp AUROC {msp:.3f} (T = {t_cal:.3f}); ODIN reduction {args.reduction}\n")
    print("| ODIN T | " + " | ".join(f"eps {e:g}" for e in LIANG_GRID_EPS) + " |")
    print("|---|" + "---|" * len(LIANG_GRID_EPS))
    for t in args.temperatures:
        s_id, s_ood = (
            odin_scores_by_eps(model, x, LIANG_GRID_EPS, std, batch_size=1000, temperature=t, reduction=args.reduction)
            for x in (x_id, x_ood)
        )
        cells = [ood_detection(s_id[k], s_ood[k])["auroc"] for k in range(len(LIANG_GRID_EPS))]
        print(f"| {t:g} | " + " | ".join(f"**{a:.3f}**" if a > msp else f"{a:.3f}" for a in cells) + " |", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=REPO / "models" / "bundles" / "default")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0, 100.0, 1000.0])
    p.add_argument("--reduction", choices=REDUCTIONS, default="predictive", help="how ODIN reduces a sampled model's logits (models/scorers/odin.py)")
    main(p.parse_args())
