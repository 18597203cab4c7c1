"""Run every benchmark and write the results as a table to benchmarks/results.md.

Run with ``make bench`` (or ``python benchmarks/run.py``). Numbers are for the machine
they ran on; the table says which.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import bench_engine  # noqa: E402
import bench_expressions  # noqa: E402
import bench_import  # noqa: E402
import bench_parse  # noqa: E402
import bench_scaleout  # noqa: E402
import bench_schedules  # noqa: E402
import bench_segment_exits  # noqa: E402
import bench_segments  # noqa: E402
import bench_server  # noqa: E402
import bench_simulation  # noqa: E402
import bench_storage  # noqa: E402
import bench_templates  # noqa: E402
import bench_tracking  # noqa: E402
from machine import describe  # noqa: E402

# (what, module's run(), unit, target as text, is the target met by a value)
Check = Callable[[float], bool]


def _at_least(target: float) -> Check:
    return lambda value: value >= target


def _under(target: float) -> Check:
    return lambda value: value < target


SUITES: list[tuple[str, Callable[[], list[tuple[str, float, str]]], str, str, Check]] = [
    ("engine", bench_engine.run, "transitions/s", ">= 100,000/s", lambda v: v >= 100_000),
    ("expressions", bench_expressions.run, "µs median", "< 5 µs", _under(5)),
    ("templates", bench_templates.run, "µs median", "(none)", lambda v: True),
    ("parse", bench_parse.run, "ms median", "(none)", lambda v: True),
    ("simulation", bench_simulation.run, "s", "< 3 s", _under(3)),
    ("simulation memory", bench_simulation.looping, "MB", "< 200 MB", _under(200)),
    ("server track", bench_server.track, "events/s", ">= 5,000/s", lambda v: v >= 5_000),
    ("server batch", bench_server.batch, "events/s", ">= 10,000/s", lambda v: v >= 10_000),
    ("server latency", bench_server.latency, "ms", "p99 < 100 ms", _under(100)),
    ("server memory", bench_server.memory, "MB", "< 300 MB", _under(300)),
    ("server database", bench_server.database, "MB", "(none)", lambda v: True),
    ("server timers", bench_server.timers, "s", "p99 < 1 s", _under(1)),
    ("tracking rewrite", bench_tracking.rewrite, "µs median", "(none)", lambda v: True),
    ("tracking endpoints", bench_tracking.endpoints, "requests/s", ">= 5,000/s", _at_least(5_000)),
    ("storage", bench_storage.run, "ms median", "(none)", lambda v: True),
    ("import", bench_import.run, "events/s", ">= 50,000/s", _at_least(50_000)),
    ("import memory", bench_import.memory, "MB", "(none)", lambda v: True),
    ("segments core", bench_segments.core, "% drop", "< 15%", _under(15)),
    ("segments mix", bench_segments.mix, "% drop", "< 15%", _under(15)),
    ("segments ingest", bench_segments.ingest, "% drop", "< 15%", _under(15)),
    ("segments serve mix", bench_segments.serve_mix, "% drop", "< 15%", _under(15)),
    ("segments returning", bench_segments.serve_returning, "% drop", "< 15%", _under(15)),
    ("segment exits", bench_segment_exits.run, "s", "< 1 s", _under(1)),
    ("scheduled run", bench_schedules.run, "profiles/s", ">= 5,000/s", _at_least(5_000)),
    ("scheduled run memory", bench_schedules.memory, "MB", "< 300 MB", _under(300)),
    ("scale-out", bench_scaleout.run, "events/s", ">= 3,000/s", lambda v: v >= 3_000),
    ("scale-out memory", bench_scaleout.memory, "MB", "< 300 MB", _under(300)),
    ("scale-out database", bench_scaleout.database, "MB", "(none)", lambda v: True),
    ("scale-out timers", bench_scaleout.timers, "s", "p99 < 1 s", _under(1)),
]


def main() -> None:
    rows = []
    for suite, run, unit, target, met in SUITES:
        print(f"running {suite} ...", flush=True)
        for label, value, note in run():
            shown = f"{value:,.0f}" if value >= 1000 else f"{value:,.2f}"
            verdict = target if target == "(none)" else f"{target} {'yes' if met(value) else 'NO'}"
            rows.append((label, f"{shown} {unit}", verdict, note))
            print(f"  {label}: {shown} {unit}", flush=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Measured {stamp} on {describe()}, with `make bench`.",
        "",
        "| benchmark | result | target met | what |",
        "|---|---|---|---|",
        *(f"| {label} | {result} | {verdict} | {note} |" for label, result, verdict, note in rows),
        "",
    ]
    (HERE / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
