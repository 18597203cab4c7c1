"""How long reading a journey takes as it grows: 5,000, 10,000 and 20,000 steps.

Builds one journey document of waits, sends, branches, waits for events and profile
updates, read from YAML once, then times the parse (``parse_documents``) and the checks
(``check``) apart, median of 5 runs each. Both take time in proportion to the steps: the
20,000-step journey should take about twice as long as the 10,000-step one, not four times.

Run with ``python benchmarks/bench_parse.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from journeyman.domain.checks import check
from journeyman.domain.documents import Document, read_documents
from journeyman.domain.parse import parse_documents

SIZES = (5_000, 10_000, 20_000)
RUNS = 5

HEADER = """
kind: event
name: signed_up
---
kind: event
name: clicked
---
kind: template
name: hello
channel: email
subject: "Hello"
text: "Hello {{ profile.email }}"
---
kind: journey
name: long
entry: {event: signed_up}
timeout: 3650d
steps:
"""

# Five steps, repeated: each one names the step after it, or the one after that.
PATTERN = """  - id: wait_{n}
    wait: 1m
  - id: send_{n}
    send: hello
  - id: branch_{n}
    branch:
      - when: profile.plan == "pro"
        goto: update_{n}
      - otherwise: click_{n}
  - id: click_{n}
    wait_for: {{event: clicked, timeout: 1h}}
    on_timeout: update_{n}
  - id: update_{n}
    update_profile:
      set: {{step: {n}}}
"""


def documents(steps: int) -> list[Document]:
    body = "".join(PATTERN.format(n=n) for n in range(steps // 5))
    found, problems = read_documents(HEADER + body + "  - id: done\n    end: done\n", "long.yaml")
    assert not problems, problems[:3]
    return found


def median_ms(work: Callable[[list[Document]], object], found: list[Document]) -> float:
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        work(found)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def parsed_and_checked(found: list[Document]) -> None:
    check(parse_documents(found))


def run() -> list[tuple[str, float, str]]:
    note = "waits, sends, branches, waits for events, profile updates; median of 5"
    rows = []
    for steps in SIZES:
        found = documents(steps)
        parsed = parse_documents(found)
        assert not parsed.problems, parsed.problems[:3]
        assert len(parsed.journeys["long"].steps) == steps + 1
        parse = median_ms(parse_documents, found)
        rows.append((f"parse a journey of {steps:,} steps", parse, note))
        both = median_ms(parsed_and_checked, found)
        rows.append((f"parse and check a journey of {steps:,} steps", both, note))
    return rows


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label}: {value:,.1f} ms ({note})")
