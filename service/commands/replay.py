"""`vigil replay`: answer the logged inputs again and compare with what was logged.

With `VIGIL_LOG_STORE_INPUTS`, each row keeps the model input it was answered on. Every
method answers an input the same way alone, in a batch and at any later call (sampled
models draw from the bundle's seed: models/sampling.py), so the bundle that logged a row
must give the row's answer again:
- audit: replayed with the bundle that logged them (same name and version), every answer
  must come back (the hash chain shows the rows were not edited; this shows the model
  behind them is the one on disk). Exit status 1 when one does not.
- what-if: replayed with another version, the report counts the decisions that would
  change (accept -> abstain, ...) on real traffic before it is deployed.
Rows are reported by the model (name, version) that logged them, so the rows of the
bundle's own version are audited whatever else was selected. Exit status: 0, 1 when the
audit failed (an answer differs, or a stored input of its own rows cannot be replayed),
2 for a usage error, 3 when no row was selected (an audit of nothing is no pass), 70 for a bug
(service/cli.py).
"""

from __future__ import annotations

import argparse
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine, Row

    from models.bundle import Bundle
    from service.schemas import PredictionPublic

#: Inputs per forward: as served (VIGIL_BATCH_MAX_SIZE's default); answers do not depend on it.
BATCH = 64
#: Probabilities are logged to 6 significant digits and served with BatchNorm folded into the
#: convolutions: the same answer agrees to ~1e-6, another model's differs by far more.
PROB_TOLERANCE = 1e-4
SCORE_RTOL = 1e-4
#: Logged fields compared exactly, then the ones compared within a tolerance.
EXACT = ("predicted_label", "prediction_set", "failure_flagged", "ood_flagged", "decision")
CLOSE = ("probabilities", "failure_score", "ood_score")
#: Each score's method: scores of two different methods are not compared, their methods differ.
METHODS = ("failure_method", "ood_method")
SHOWN = 20
#: Exit status when no row was selected: an audit of nothing is not a pass (1: the audit failed;
#: 2: a usage error, as every vigil command).
NOTHING = 3


@dataclass
class Tally:
    """The replay of one logging model's rows (name, version): counts, a few examples."""

    answered: int = 0
    differ: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (logged, replayed)
    #: The first `SHOWN` differing rows (request id, fields): a replay of millions stays small.
    examples: list[tuple[str, list[str]]] = field(default_factory=list)
    unreadable: int = 0
    unreadable_examples: list[str] = field(default_factory=list)


class BadInput(ValueError):
    """A stored input this bundle cannot take; the message says why."""


def _tally(result: dict[tuple[str, str], Tally], row: dict[str, Any]) -> Tally:
    return result.setdefault((str(row["model_name"]), str(row["model_version"])), Tally())


def differing_fields(logged: dict[str, Any], replayed: PredictionPublic) -> list[str]:
    """The answer fields in which `replayed` is not the `logged` row's answer."""
    from service.respond import log_fields

    new = log_fields(replayed)
    out = [name for name in EXACT if logged[name] != new[name]]
    old_p, new_p = logged["probabilities"] or [], new["probabilities"]
    if len(old_p) != len(new_p) or any(abs(a - b) > PROB_TOLERANCE for a, b in zip(old_p, new_p, strict=False)):
        out.append("probabilities")
    for role in ("failure", "ood"):
        if logged[f"{role}_method"] != new[f"{role}_method"]:
            out.append(f"{role}_method")
            continue
        a, b = logged[f"{role}_score"], new[f"{role}_score"]
        if a is None or abs(a - b) > SCORE_RTOL * max(1.0, abs(a)):
            out.append(f"{role}_score")
    return out


def _rows(engine: Engine, model: str | None, since: Any, until: Any, limit: int | None) -> Iterator[Row[Any]]:
    """Successful predictions with a stored input, oldest first, a few hundred at a time."""
    from sqlalchemy import select

    from service.db.queries import RequestFilter
    from service.db.tables import RequestRecord as R

    columns = [R.request_id, R.model_name, R.model_version, R.input_pixels, *(getattr(R, n) for n in EXACT + CLOSE + METHODS)]
    stmt = select(*columns).where(R.input_pixels.is_not(None), R.predicted_label.is_not(None))
    stmt = RequestFilter(since, until, model).apply(stmt).order_by(R.id).limit(limit)
    with engine.connect() as conn:
        for part in conn.execution_options(yield_per=256).execute(stmt).partitions():
            yield from part


def _pixels(blob: bytes, shape: tuple[int, int, int]) -> Any:
    """The stored input as the bundle takes it, ``[C, H, W]`` float32, or `BadInput`."""
    import numpy as np
    import torch

    try:
        arr = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise BadInput(f"not an .npy array ({type(e).__name__})") from e
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise BadInput("not an .npy array (an archive)")
    if arr.dtype.kind not in "fiu":
        raise BadInput(f"dtype {arr.dtype}, not real numbers")
    if arr.shape != shape:
        raise BadInput(f"shape {tuple(arr.shape)}, the bundle takes {shape}")
    return torch.from_numpy(arr.astype(np.float32))


def replay(
    engine: Engine, bundle: Bundle, model: str | None, since: Any = None, until: Any = None, limit: int | None = None
) -> dict[tuple[str, str], Tally]:
    """Answer every selected row's stored input with `bundle`, as served, and compare; by logging model."""
    import torch

    from models.pipeline import Pipeline
    from service.respond import build_prediction

    spec = bundle.manifest.input
    shape = (spec.channels, spec.height, spec.width)
    pipeline, result = Pipeline(bundle), {}
    batch: list[tuple[dict[str, Any], torch.Tensor]] = []

    def flush() -> None:
        out = pipeline.run(torch.stack([x for _, x in batch])).with_values()  # once per batch, as served
        for i, (row, _) in enumerate(batch):
            answer = build_prediction(out.row(i), bundle.manifest, row["request_id"], 0.0)
            tally = _tally(result, row)
            tally.answered += 1
            tally.decisions[(row["decision"], answer.decision)] += 1
            if differ := differing_fields(row, answer):
                tally.differ += 1
                tally.fields.update(differ)
                if len(tally.examples) < SHOWN:
                    tally.examples.append((row["request_id"], differ))
        batch.clear()

    for selected in _rows(engine, model, since, until, limit):
        row = dict(selected._mapping)
        try:
            batch.append((row, _pixels(row["input_pixels"], shape)))
        except BadInput as e:
            tally = _tally(result, row)
            tally.unreadable += 1
            if len(tally.unreadable_examples) < 3:
                tally.unreadable_examples.append(f"{row['request_id']}: {e}")
            continue
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    return result


def report(result: dict[tuple[str, str], Tally], bundle: Bundle) -> tuple[list[str], bool]:
    """Printable lines, and whether the audit failed: a row logged by this very bundle (name and
    version) that it now answers otherwise, or whose stored input it cannot read."""
    m = bundle.manifest
    total = sum(t.answered for t in result.values())
    lines = [f"replayed {total} logged answers with {m.name} v{m.version}"]
    failed = False
    for (name, version), t in sorted(result.items()):
        own = (name, version) == (m.name, m.version)
        kind = "audit: the bundle that logged them" if own else "what-if: another model"
        lines.append(f"logged by {name} v{version} ({kind}): same answer: {t.answered - t.differ}; different: {t.differ}")
        if t.unreadable:
            lines.append(f"  inputs that cannot be replayed: {t.unreadable} (" + "; ".join(t.unreadable_examples) + ")")
        if t.differ:
            lines.append("  fields that differ: " + ", ".join(f"{k} {v}" for k, v in t.fields.most_common()))
            lines += [f"  {rid}: {', '.join(fields)}" for rid, fields in t.examples]
            if t.differ > len(t.examples):
                lines.append(f"  ... and {t.differ - len(t.examples)} more")
        moved = {k: v for k, v in t.decisions.items() if k[0] != k[1]}
        if moved:
            lines.append("  decisions that change: " + ", ".join(f"{a} -> {b}: {c}" for (a, b), c in sorted(moved.items())))
        failed = failed or (own and bool(t.differ or t.unreadable))
    if failed:
        lines.append(f"AUDIT FAILED: rows logged by {m.name} v{m.version} are not answered so by it now")
    return lines, failed


def _run(args: argparse.Namespace) -> int:
    from models.bundle import load_bundle
    from service.commands.requestlog import _engine, _window
    from service.settings import Settings

    _window(args)
    bundle = load_bundle(Path(args.bundle) if args.bundle else Settings().model_dir)
    engine = _engine(args)
    try:
        model = None if args.all_models else (args.model or bundle.manifest.name)
        result = replay(engine, bundle, model, args.since, args.until, args.limit)
    finally:
        engine.dispose()
    if not result:
        # Name the filters that applied: rows of another model were there, and the old hint
        # (store inputs) sent the operator after the wrong cause.
        chosen = "of any model" if model is None else f"of model {model!r} (another: --model NAME, every model: --all-models)"
        print(
            f"nothing to replay: no successful prediction {chosen} with a stored input was selected "
            "in the window (inputs are stored with VIGIL_LOG_STORE_INPUTS=true)"
        )
        return NOTHING
    lines, failed = report(result, bundle)
    print("\n".join(lines))
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from models.usage import int_in
    from service.commands.requestlog import when

    p = sub.add_parser("replay", help="answer logged inputs again (VIGIL_LOG_STORE_INPUTS) and compare with the log")
    p.add_argument("--url", default=None, help="database URL (default VIGIL_DATABASE_URL)")
    p.add_argument("--bundle", default=None, help="bundle to answer with (default VIGIL_MODEL_DIR)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help="rows logged by this model name (default: the bundle's)")
    which.add_argument("--all-models", action="store_true", help="rows of every model name")
    p.add_argument("--since", type=when, default=None, help="ISO time or 90m/24h/7d ago")
    p.add_argument("--until", type=when, default=None)
    p.add_argument("--limit", type=int_in(1, None, "positive integer"), default=None, help="at most this many rows, oldest first")
    p.set_defaults(func=_run)
