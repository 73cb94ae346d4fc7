"""Ratios against the issue-6 targets, and the tables printed by `python -m benchmarks.run`."""

from __future__ import annotations

from typing import Any

# (name, value, comparison, target): "ge" means value >= target is met.
Target = tuple[str, float, str, float]


def ratios(r: dict[str, Any]) -> dict[str, float]:
    ceil, svc, naive = r["ceiling"], r["service"], r["naive"]
    cost = lambda cfg, b: 1.0 / ceil[cfg]["service_path"][b]  # seconds per image
    out: dict[str, float] = {}
    for cfg in svc:
        c64 = svc[cfg]["levels"][64]["throughput"]
        out[f"{cfg}: service c=64 / ceiling b=64"] = c64 / ceil[cfg]["service_path"][64]
        out[f"{cfg}: service c=64 / naive c=64"] = c64 / naive[cfg]["levels"][64]["throughput"]
        c8 = svc[cfg]["levels"][8]
        out[f"{cfg}: p99 / p50 at c=8"] = c8["p99_ms"] / c8["p50_ms"]
    for b in (1, 64):
        out[f"ensemble5 / single cost, b={b}"] = cost("ensemble5_msp", b) / cost("single_msp", b)
        out[f"ODIN / MSP cost (ensemble5), b={b}"] = cost("ensemble5_odin", b) / cost("ensemble5_msp", b)
    return {k: round(v, 2) for k, v in out.items()}


def targets(r: dict[str, Any], q: dict[str, float]) -> list[Target]:
    e = "ensemble5_odin"
    return [
        (f"{e}: service c=64 >= 0.7 x ceiling b=64", q[f"{e}: service c=64 / ceiling b=64"], "ge", 0.7),
        (f"{e}: service >= 5 x naive at c=64", q[f"{e}: service c=64 / naive c=64"], "ge", 5.0),
        ("ensemble5 <= 2 x single at b=1", q["ensemble5 / single cost, b=1"], "le", 2.0),
        ("ensemble5 <= 5.5 x single at b=64", q["ensemble5 / single cost, b=64"], "le", 5.5),
        ("default: p99 <= 4 x p50 at c=8", q["default: p99 / p50 at c=8"], "le", 4.0),
        (f"{e}: p99 <= 4 x p50 at c=8", q[f"{e}: p99 / p50 at c=8"], "le", 4.0),
        ("default: peak RSS of each process <= 1500 MiB", r["service"]["default"]["peak_rss_mb"], "le", 1500.0),
        # Beyond the "one process": the parent and its inference child together.
        ("default: PSS of all processes <= 1500 MiB", r["service"]["default"]["pss_mb_total"], "le", 1500.0),
    ]


def table(rows: list[list[Any]], head: list[str]) -> str:
    cells = [head, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def render(r: dict[str, Any], q: dict[str, float], t: list[Target]) -> str:
    ceil_rows = [[cfg, var, *v.values()] for cfg, d in r["ceiling"].items() for var, v in d.items()]
    parts = ["In-process ceiling (images/s by batch size)", table(ceil_rows, ["config", "variant", "b=1", "b=8", "b=64", "b=256"])]
    svc_rows = []
    for kind in ("service", "naive"):
        for cfg, d in r[kind].items():
            for c, m in d["levels"].items():
                row = [kind, cfg, c, m["throughput"], m["p50_ms"], m["p95_ms"], m["p99_ms"], m["server_cpu_ms_per_request"], m["requests"]]
                svc_rows.append([*row, d["peak_rss_mb"], d["pss_mb_total"]])
    head = ["server", "config", "c", "req/s", "p50 ms", "p95 ms", "p99 ms", "CPU ms/req", "requests", "peak RSS MiB", "PSS MiB, all"]
    parts += ["", "HTTP (separate load-generator process, SQLite request log on)", table(svc_rows, head)]
    parts += ["", "Ratios", table([[k, v] for k, v in q.items()], ["ratio", "value"])]
    met = [[name, value, ("met" if (value >= goal if op == "ge" else value <= goal) else "MISSED")] for name, value, op, goal in t]
    parts += ["", "Targets", table(met, ["target", "measured", ""])]
    return "\n".join(parts)
