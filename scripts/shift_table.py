"""The README's table of what `accept` means under a shift, measured through the API itself.

MNIST test digits, as they are and under three shifts, are uploaded as PNG files to
`/v1/predict/batch` of an in-process service (the served bundle, a throwaway SQLite log), and
the answers are counted: accuracy of the label, share accepted, errors among the accepted,
share rejected as out of distribution, and coverage of the prediction sets.

    python scripts/shift_table.py [--data-dir ../shared/datasets] [--n 500] [--model DIR]

The shifts are made with Pillow on the 28x28 digits: rotation with bilinear resampling
around the centre (nearest-neighbour rotation frays the strokes, and the OOD gate then
rejects about half the digits: it is another shift), and a Gaussian blur of radius 1 px.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from models.bundle import read_manifest
from service.app import create_app
from service.settings import Settings
from training.data import load_mnist
from training.settings import TrainingSettings

#: Each shift: its row name and what it does to a digit (white on black, 28x28, mode L).
SHIFTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "as they are": lambda im: im,
    "rotated 30°": lambda im: im.rotate(30, resample=Image.Resampling.BILINEAR),
    "rotated 180°": lambda im: im.rotate(180),
    "blurred, σ = 1 px": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
}

@dataclass(frozen=True)
class Row:
    accuracy: float
    accepted: float
    errors_among_accepted: float | None
    rejected_ood: float
    set_coverage: float


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def answers(client: TestClient, images: list[bytes]) -> list[dict[str, Any]]:
    """One answer per image, in order, through /v1/predict/batch (as many per request as the
    served app's VIGIL_MAX_BATCH_IMAGES allows)."""
    per_request = client.app.state.ctx.settings.max_batch_images  # type: ignore[attr-defined]
    out: list[dict[str, Any]] = []
    for i in range(0, len(images), per_request):
        files = [("images", (f"{i + j}.png", data, "image/png")) for j, data in enumerate(images[i : i + per_request])]
        r = client.post("/v1/predict/batch", files=files)
        r.raise_for_status()
        out += r.json()["results"]
    return out


def tally(results: list[dict[str, Any]], labels: list[int]) -> Row:
    """Percentages over the images; an image the service refused counts against every rate."""
    n = len(labels)
    right = [r.get("prediction", {}).get("label") == y for r, y in zip(results, labels, strict=True)]
    accepted = [r.get("decision") == "accept" for r in results]
    wrong_accepted = sum(a and not ok for a, ok in zip(accepted, right, strict=True))
    covered = sum(y in r.get("prediction_set", []) for r, y in zip(results, labels, strict=True))
    return Row(
        accuracy=100 * sum(right) / n,
        accepted=100 * sum(accepted) / n,
        errors_among_accepted=100 * wrong_accepted / sum(accepted) if any(accepted) else None,
        rejected_ood=100 * sum(r.get("decision") == "reject_ood" for r in results) / n,
        set_coverage=100 * covered / n,
    )


def measure(client: TestClient, digits: list[Image.Image], labels: list[int]) -> dict[str, Row]:
    return {name: tally(answers(client, [png(shift(d)) for d in digits]), labels) for name, shift in SHIFTS.items()}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} %"


def markdown(rows: dict[str, Row]) -> str:
    lines = ["| input | accuracy | accepted | errors among accepted | rejected as OOD | set coverage |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        cells = (r.accuracy, r.accepted, r.errors_among_accepted, r.rejected_ood, r.set_coverage)
        lines.append(f"| {name} | " + " | ".join(_pct(v) for v in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(TrainingSettings().data_dir))
    p.add_argument("--n", type=int, default=500, help="the first N MNIST test digits (default 500)")
    p.add_argument("--model", type=Path, default=None, help="bundle folder (default: the shipped one)")
    args = p.parse_args(argv)
    test = load_mnist(Path(args.data_dir), train=False)
    digits = [Image.fromarray((x[0] * 255).round().byte().numpy(), mode="L") for x in test.x[: args.n]]
    labels = [int(y) for y in test.y[: args.n]]
    with tempfile.TemporaryDirectory() as tmp:
        extra = {} if args.model is None else {"model_dir": args.model}
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'log.db'}", migrate_on_start=True, log_spool_path=Path(tmp) / "spool.jsonl", **extra)  # type: ignore[arg-type]
        with TestClient(create_app(settings)) as client:
            rows = measure(client, digits, labels)
    m = read_manifest(settings.model_dir)
    print(f"{m.name} v{m.version}, the first {args.n} MNIST test digits, through /v1/predict/batch:\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
