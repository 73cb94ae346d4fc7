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
"""

from __future__ import annotations

import argparse
import io
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

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


@dataclass
class Replay:
    """What a replay found: counts, the rows that differ and how decisions moved."""

    rows: int = 0
    unreadable: list[str] = field(default_factory=list)
    differ: dict[str, list[str]] = field(default_factory=dict)  # request id -> differing fields
    fields: Counter[str] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (logged, replayed)
    logged_by: Counter[tuple[str, str]] = field(default_factory=Counter)  # (name, version)


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


def _rows(engine: Engine, model: str | None, since: Any, until: Any, limit: int | None) -> Iterator[Sequence[Any]]:
    """Successful predictions with a stored input, oldest first, a few hundred at a time."""
    from sqlalchemy import select

    from service.db.tables import RequestRecord as R

    columns = [R.request_id, R.model_name, R.model_version, R.input_pixels, *(getattr(R, n) for n in EXACT + CLOSE + METHODS)]
    stmt = select(*columns).where(R.input_pixels.is_not(None), R.predicted_label.is_not(None))
    if model is not None:
        stmt = stmt.where(R.model_name == model)
    if since is not None:
        stmt = stmt.where(R.received_at >= since)
    if until is not None:
        stmt = stmt.where(R.received_at < until)
    stmt = stmt.order_by(R.id).limit(limit)
    with engine.connect() as conn:
        for part in conn.execution_options(yield_per=256).execute(stmt).partitions():
            yield from part


def _pixels(blob: bytes) -> Any:
    import numpy as np
    import torch

    return torch.from_numpy(np.load(io.BytesIO(blob), allow_pickle=False).astype(np.float32))


def replay(engine: Engine, bundle: Bundle, model: str | None, since: Any = None, until: Any = None, limit: int | None = None) -> Replay:
    """Answer every selected row's stored input with `bundle`, as served, and compare."""
    import torch

    from models.pipeline import Pipeline
    from service.respond import build_prediction

    pipeline, result = Pipeline(bundle), Replay()
    names = ["request_id", "model_name", "model_version", "input_pixels", *EXACT, *CLOSE, *METHODS]
    batch: list[tuple[dict[str, Any], torch.Tensor]] = []

    def flush() -> None:
        out = pipeline.run(torch.stack([x for _, x in batch]))
        for i, (row, _) in enumerate(batch):
            answer = build_prediction(out.row(i), bundle.manifest, row["request_id"], 0.0)
            result.decisions[(row["decision"], answer.decision)] += 1
            if differ := differing_fields(row, answer):
                result.differ[row["request_id"]] = differ
                result.fields.update(differ)
        batch.clear()

    for values in _rows(engine, model, since, until, limit):
        row = dict(zip(names, values, strict=True))
        result.rows += 1
        result.logged_by[(row["model_name"], row["model_version"])] += 1
        try:
            x = _pixels(row["input_pixels"])
        except ValueError:  # not an .npy array (numpy raises ValueError for every malformed header)
            result.unreadable.append(row["request_id"])
            continue
        if batch and x.shape != batch[0][1].shape:
            flush()  # another input size: its own forward
        batch.append((row, x))
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    return result


def report(result: Replay, bundle: Bundle) -> tuple[list[str], bool]:
    """Printable lines, and whether this was an audit that failed."""
    m = bundle.manifest
    own = set(result.logged_by) == {(m.name, m.version)}
    answered = result.rows - len(result.unreadable)
    logged_by = ", ".join(f"{n} v{v}: {c}" for (n, v), c in sorted(result.logged_by.items(), key=str))
    lines = [f"replayed {answered} logged answers ({logged_by or 'none'}) with {m.name} v{m.version}"]
    if result.unreadable:
        lines.append(f"unreadable stored inputs: {len(result.unreadable)} (e.g. {', '.join(result.unreadable[:3])})")
    lines.append(f"same answer: {answered - len(result.differ)}; different: {len(result.differ)}")
    if result.differ:
        lines.append("fields that differ: " + ", ".join(f"{k} {v}" for k, v in result.fields.most_common()))
        for rid, names in list(result.differ.items())[:SHOWN]:
            lines.append(f"  {rid}: {', '.join(names)}")
        if len(result.differ) > SHOWN:
            lines.append(f"  ... and {len(result.differ) - SHOWN} more")
    moved = {k: v for k, v in result.decisions.items() if k[0] != k[1]}
    if moved:
        lines.append("decisions that change: " + ", ".join(f"{a} -> {b}: {c}" for (a, b), c in sorted(moved.items())))
    if own and result.differ:
        lines.append(f"AUDIT FAILED: {m.name} v{m.version} logged these rows but does not answer them so now")
    return lines, own and bool(result.differ)


def _run(args: argparse.Namespace) -> int:
    from models.bundle import load_bundle
    from models.usage import UsageError
    from service.commands.requestlog import _engine
    from service.db.queries import WindowError, check_window
    from service.settings import Settings

    try:
        check_window(args.since, args.until)
    except WindowError as e:
        raise UsageError(e.describe("--since", "--until")) from e
    bundle = load_bundle(Path(args.bundle) if args.bundle else Settings().model_dir)
    engine = _engine(args)
    try:
        model = None if args.all_models else (args.model or bundle.manifest.name)
        result = replay(engine, bundle, model, args.since, args.until, args.limit)
    finally:
        engine.dispose()
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
