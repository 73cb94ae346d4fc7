"""Build the demo page's gallery (service/static/gallery/) from the local MNIST and Fashion-MNIST.

Examples are chosen by what the shipped model actually does with them, so a caption
never promises a decision the service will not make: clear digits it accepts, real
digits it abstains on, and clothing or noise it rejects as out of distribution.

    python scripts/make_gallery.py [--data-dir ../shared/datasets] [--model models/bundles/default]

MNIST: Yann LeCun and Corinna Cortes, CC BY-SA 3.0. Fashion-MNIST: Zalando SE, MIT.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.bundle import load_bundle
from models.pipeline import Pipeline, PipelineOutput
from training.data import load_fashion_mnist, load_mnist

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "service" / "static" / "gallery"
FASHION = [
    "T-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
CREDITS = {
    "MNIST": "Yann LeCun and Corinna Cortes, CC BY-SA 3.0",
    "Fashion-MNIST": "Zalando SE (Xiao, Rasul and Vollgraf 2017), MIT licence",
}


def decisions(out: PipelineOutput, pipeline: Pipeline) -> list[str]:
    m = pipeline.bundle.manifest
    ood = out.ood_score > m.ood.threshold
    fail = out.failure_score > m.failure.threshold
    return [
        "reject_ood" if o else "abstain" if f else "accept"
        for o, f in zip(ood.tolist(), fail.tolist(), strict=True)
    ]


def save(name: str, pixels: torch.Tensor) -> str:
    arr = (pixels.squeeze(0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", optimize=True)
    (OUT / name).write_bytes(buf.getvalue())
    return name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data-dir", type=Path, default=REPO.parent / "shared" / "datasets"
    )
    ap.add_argument(
        "--model", type=Path, default=REPO / "models" / "bundles" / "default"
    )
    args = ap.parse_args()
    pipeline = Pipeline(load_bundle(args.model))
    items: list[dict[str, object]] = []

    digits = load_mnist(args.data_dir, train=False).head(3000)
    out = pipeline.run(digits.x)
    dec = decisions(out, pipeline)
    labels = out.probs.argmax(1)
    for want in (0, 2, 3, 5, 7, 8):  # clear: accepted, right, and very sure
        i = next(
            i
            for i in range(len(dec))
            if int(digits.y[i]) == want
            and dec[i] == "accept"
            and out.probs[i].max() > 0.999
        )
        items.append(
            {
                "file": save(f"clear-{want}.png", digits.x[i]),
                "group": "clear",
                "label": want,
                "caption": f"A clear {want}",
                "source": f"MNIST test image {i}",
            }
        )
    unsure = [i for i in range(len(dec)) if dec[i] == "abstain"]
    unsure.sort(key=lambda i: -float(out.failure_score[i]))
    for i in unsure[:4]:  # ambiguous: real digits the model should not be trusted on
        top2 = out.probs[i].topk(2).indices.tolist()
        items.append(
            {
                "file": save(f"ambiguous-{i}.png", digits.x[i]),
                "group": "ambiguous",
                "label": int(digits.y[i]),
                "caption": f"Written as {int(digits.y[i])}; could be {top2[0]} or {top2[1]}",
                "source": f"MNIST test image {i}",
                "model_says": int(labels[i]),
            }
        )

    fashion = load_fashion_mnist(args.data_dir, train=False).head(500)
    fdec = decisions(pipeline.run(fashion.x), pipeline)
    for cls in (1, 8, 7):  # trouser, bag, sneaker
        i = next(
            i
            for i in range(len(fdec))
            if int(fashion.y[i]) == cls and fdec[i] == "reject_ood"
        )
        items.append(
            {
                "file": save(
                    f"fashion-{FASHION[cls].replace(' ', '-')}.png", fashion.x[i]
                ),
                "group": "not_a_digit",
                "label": None,
                "caption": f"A {FASHION[cls]} (Fashion-MNIST, not a digit)",
                "source": f"Fashion-MNIST test image {i}",
            }
        )
    gen = torch.Generator().manual_seed(7)
    noise = torch.rand(40, 1, 28, 28, generator=gen)
    ndec = decisions(pipeline.run(noise), pipeline)
    i = ndec.index("reject_ood")
    items.append(
        {
            "file": save("noise.png", noise[i]),
            "group": "not_a_digit",
            "label": None,
            "caption": "Random noise",
            "source": "generated (uniform noise, seed 7)",
        }
    )
    (OUT / "gallery.json").write_text(
        json.dumps({"credits": CREDITS, "items": items}, indent=1) + "\n"
    )
    # Examples chosen for an earlier model would otherwise linger, unlisted.
    for stale in set(OUT.glob("*.png")) - {OUT / i["file"] for i in items}:
        stale.unlink()
    print(f"{len(items)} images in {OUT}")


if __name__ == "__main__":
    main()
