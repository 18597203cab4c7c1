"""Evaluation times of typical ``when:`` conditions.

Run with ``python benchmarks/bench_expressions.py``.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from typing import Any

from journeyman.domain.expressions import Expression, compile_expression

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)

SCOPE: dict[str, Any] = {
    "profile": {"id": "p-1042", "plan": "pro", "tags": ["beta", "newsletter", "vip"]},
    "event": {"event": "order_completed", "total": 149.5, "cart_id": "c-9f3a"},
    "entry": {
        "event": "cart_abandoned",
        "cart_id": "c-9f3a",
        "timestamp": "2026-01-03T18:02:00Z",
    },
    "journey": {"name": "cart_recovery", "version": 4},
    "now": NOW,
}

CASES = [
    (
        "three-clause condition",
        'profile.plan == "pro" and event.total > 100 and "vip" in profile.tags',
    ),
    ("field equals field", "event.cart_id == entry.cart_id"),
    ("elapsed time vs duration", 'now - entry.timestamp > duration("2d")'),
]


def _median_us(expression: Expression, iterations: int, rounds: int = 7) -> float:
    evaluate = expression.evaluate
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            evaluate(SCOPE)
        samples.append((time.perf_counter_ns() - start) / iterations / 1000)
    return statistics.median(samples)


def run() -> list[tuple[str, float, str]]:
    """(label, median microseconds per evaluation, note) for each case."""
    results = []
    for label, source in CASES:
        expression = compile_expression(source)
        result = expression.evaluate(SCOPE)
        results.append((label, _median_us(expression, 50_000), f"{source} -> {result}"))
    return results


if __name__ == "__main__":
    for label, median, note in run():
        print(f"{label:<28} {median:8.2f} µs   {note}")
