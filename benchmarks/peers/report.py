"""The peers' table: printed, written as markdown with every setting, and drawn."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

JOURNEYMAN = "journeyman"


def _n(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def _pair(quantiles: dict[str, Any]) -> str:
    if not quantiles.get("count"):
        return "n/a"
    return f"{_n(quantiles['p50'])} / {_n(quantiles['p99'])}"


def _point(point: dict[str, Any], key: str, scale: float) -> str:
    shown = _n(point[key] / scale)
    if point["extrapolated"]:
        return f"~{shown}*"
    return shown


COLUMNS = (
    "configuration",
    "entries/s",
    "follow-ups/s",
    "entry→send p50 / p99 ms",
    "follow-up→send p50 / p99 ms",
    "timer lateness p50 / p99 ms",
    "memory MB, 10k waiting",
    "memory MB, 100k waiting",
    "storage MB, 10k waiting",
    "storage MB, 100k waiting",
    "CPU s per 1,000 profiles",
)


def row(result: Any) -> list[str]:
    if result.error:
        return [result.peer, "failed", *["" for _ in COLUMNS[2:]]]
    at10k, at100k = result.waiting
    stored = (
        [_point(at10k, "bytes", 1e6), _point(at100k, "bytes", 1e6)]
        if at10k["bytes"] or at100k["bytes"]
        else ["(in memory)", "(in memory)"]
    )
    return [
        result.peer + (" †" if result.refused else ""),
        _n(result.entries["completed_per_s"]),
        _n(result.follow_ups["completed_per_s"]),
        _pair(result.latency["entry_to_send_ms"]),
        _pair(result.latency["follow_up_to_send_ms"]),
        _pair(result.timer["late_ms"]),
        _point(at10k, "memory_mb", 1),
        _point(at100k, "memory_mb", 1),
        *stored,
        _n(result.cpu_per_1000),
    ]


def table(results: list[Any]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return lines


def notes(result: Any) -> str:
    if result.error:
        return f"- **{result.peer}**: failed: `{result.error}`"
    e, f, lat, t = result.entries, result.follow_ups, result.latency, result.timer
    reached = ", ".join(
        f"{p['waiting']:,} waiting reached"
        + (f" (the {p['target']:,} column is extrapolated from it)" if p["extrapolated"] else "")
        for p in result.waiting
    )
    refused = ""
    if result.refused:
        refused = f" Refused calls: {'; '.join(result.refused)}; its log: `{result.log}`."
    split = ", ".join(f"{name} {value:,.1f}" for name, value in result.cpu_split.items())
    return (
        f"- **{result.peer}** ({result.versions}): {result.settings}. "
        f"Entries: {e['accepted']:,} calls accepted in {e['sending_s']:.1f}s "
        f"({e['accepted_per_s']:,.1f}/s answered 202), {e['completed']:,} welcomes in "
        f"{e['window_s']:.1f}s, {e['missing']:,} missing; p99 call→202 "
        f"{e['ack_ms'].get('p99', 0):,.0f} ms. Follow-ups: {f['accepted']:,} accepted, "
        f"{f['completed']:,} offers in {f['window_s']:.1f}s, {f['missing']:,} missing. "
        f"Latency: open loop at {lat['rate']:,.1f} entries/s for {lat['profiles']:,} "
        f"profiles, {lat['missing']:,} messages missing. Timers: {t['count']:,} profiles, "
        f"{t['missing']:,} missing. CPU seconds over entries and follow-ups, by process: "
        f"{split}. {reached}. Took {result.seconds:.0f}s; other processes "
        f"on the machine used {result.others:.2f} cores meanwhile.{refused}"
    )


def ratios(results: list[Any]) -> list[str]:
    ok = [r for r in results if not r.error]
    ours = next((r for r in ok if r.peer.startswith(JOURNEYMAN)), None)
    if ours is None:
        return []
    lines = []
    rate = ours.entries["completed_per_s"]
    for family, target in (("DBOS", 20), ("Temporal", 100)):
        theirs = [r for r in ok if r.peer.startswith(family)]
        if not theirs:
            continue
        best = max(theirs, key=lambda r: r.entries["completed_per_s"])
        times = rate / max(1e-9, best.entries["completed_per_s"])
        verdict = "met" if times >= target else "NOT met"
        lines.append(
            f"- entries/s: {ours.peer} is **{times:,.0f}x** the best {family} configuration "
            f"({best.peer}, {best.entries['completed_per_s']:,.1f}/s); target {target}x: "
            f"{verdict}."
        )
        memory = min(r.waiting[1]["memory_mb"] for r in theirs)
        mine = ours.waiting[1]["memory_mb"]
        lines.append(
            f"- memory with 100,000 waiting: {mine:,.0f} MB against {family}'s least "
            f"{memory:,.0f} MB ({'less' if mine < memory else 'NOT less'})."
        )
    worst = max(
        ours.latency["entry_to_send_ms"].get("p99", 0.0),
        ours.latency["follow_up_to_send_ms"].get("p99", 0.0),
    )
    verdict = "met" if worst < 100 else "NOT met"
    lines.append(f"- journeyman's p99 event→send: {worst:,.1f} ms; target < 100 ms: {verdict}.")
    return lines


def machine() -> str:
    kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            kib = int(line.split()[1])
    return (
        f"{os.cpu_count()} cores, {kib / 1024 / 1024:.0f} GiB, {platform.machine()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def markdown(results: list[Any], stamp: str, command: str, limits: Any, chart: str) -> str:
    lines = [
        "# journeyman and the composable alternatives",
        "",
        f"Measured {stamp} on {machine()}, with `{command}`.",
        "",
        "The same journey on each: an entry event, a send, a wait of up to 24h for a "
        "follow-up event, a branch on the profile's plan, a send, the end; half the "
        "profiles send the follow-up. Every message goes to the same sink, one fsync'd "
        "JSON line in a file, and every time is read at that sink. The load comes from one "
        "load generator (`benchmarks/peers/drive.py`) over loopback HTTP, in its own "
        "process; each 202 comes after the peer durably recorded the call.",
        "",
        *table(results),
        "",
        "`*` extrapolated: the peer did not reach that many waiting profiles in the time "
        "bound; the figure continues the line through the last two counts it was measured "
        "at (at least 1,000 apart) to that count. Memory is the RSS of every process of "
        "the configuration "
        "(for PostgreSQL: the private memory of its backends for our database, not the "
        "server's shared buffers). Storage is the database file(s), or `pg_database_size`. "
        "`†`: the peer answered some calls with an error under this load (see its notes).",
        "",
        "## Target ratios (this run)",
        "",
        *ratios(results),
        "",
        "## How each was measured",
        "",
        f"Limits: {limits_text(limits)}.",
        "",
        *(notes(r) for r in results),
        "",
        f"![throughput and latency]({chart})",
        "",
    ]
    return "\n".join(lines)


def limits_text(limits: Any) -> str:
    return (
        f"up to {limits.entries:,} entries in {limits.entry_seconds:g}s over "
        f"{limits.connections} connections (at most {limits.window} profiles between call "
        f"and message), then a follow-up for every second of them in "
        f"up to {limits.follow_seconds:g}s, {limits.drain:g}s at most for their messages; "
        f"latency: an open loop of entries at a third of the measured entry rate, with "
        f"follow-ups for half of them (calls at half the entry rate), for "
        f"{limits.latency_seconds:g}s; timers: up to {limits.timer_count:,} profiles with "
        f"a 10s wait; waiting: entries until 10,000 wait (at most "
        f"{limits.fill_seconds[0]:g}s), then until 100,000 wait (at most "
        f"{limits.fill_seconds[1]:g}s); CPU over the entries and follow-ups runs"
    )


def chart(results: list[Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if not r.error]
    names = [r.peer for r in ok]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.7 * len(ok) + 2.2))
    places = list(range(len(ok)))
    entries = [r.entries["completed_per_s"] for r in ok]
    follows = [r.follow_ups["completed_per_s"] for r in ok]
    left.barh([p + 0.2 for p in places], entries, 0.4, label="entries/s")
    left.barh([p - 0.2 for p in places], follows, 0.4, label="follow-ups/s")
    left.set_xscale("log")
    left.set_yticks(places, names)
    left.invert_yaxis()
    left.set_title("throughput (log scale, higher is better)")
    left.legend(loc="lower right")
    entry99 = [max(0.1, r.latency["entry_to_send_ms"].get("p99", 0.0)) for r in ok]
    follow99 = [max(0.1, r.latency["follow_up_to_send_ms"].get("p99", 0.0)) for r in ok]
    right.barh([p + 0.2 for p in places], entry99, 0.4, label="entry→send p99")
    right.barh([p - 0.2 for p in places], follow99, 0.4, label="follow-up→send p99")
    right.set_xscale("log")
    right.set_yticks(places, ["" for _ in names])
    right.invert_yaxis()
    right.set_title("latency p99, ms (log scale, lower is better)")
    right.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
