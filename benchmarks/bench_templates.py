"""Render times of a typical subject line and a ~1 KB HTML body.

Run with ``python benchmarks/bench_templates.py``.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from typing import Any

from journeyman.domain.templates import Template, compile_template

SUBJECT = "Hi {{ profile.firstName | default: 'there' }}, thank you for signing up!"

HTML = """<!doctype html>
<html><body style="font-family: sans-serif; color: #222;">
<p>Dear {{ profile.firstName | default: 'customer' }},</p>
<p>You left {{ entry.items | size }} items in your cart {{ entry.cart_id }}
on {{ entry.timestamp | date: '%B %d' }}. They are still waiting for you:</p>
<table cellpadding="4">
{% for item in entry.items %}  <tr>
    <td>{{ forloop.index }}.</td>
    <td>{{ item.name | escape }}</td>
    <td>{{ item.quantity }} x {{ item.price | prepend: '$' }}</td>
  </tr>
{% endfor %}</table>
{% if profile.plan == "pro" %}<p>As a Pro member, shipping is on us.</p>
{% else %}<p>Upgrade to Pro for free shipping on every order.</p>
{% endif %}<p><a href="https://shop.example.com/cart/{{ entry.cart_id }}">Back to
your cart</a></p>
<p>Sent by {{ journey.name }} v{{ journey.version }} on {{ now | date: '%Y-%m-%d' }}.
<a href="https://shop.example.com/unsubscribe?p={{ profile.id | url_encode }}">Unsubscribe</a></p>
<p style="font-size: 12px; color: #888;">Questions? Reply to this email or write to
help@shop.example.com. Shop Example Ltd, 1 Market Street, Springfield.</p>
</body></html>
"""

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)

SCOPE: dict[str, Any] = {
    "profile": {"id": "p-1042", "firstName": "Ada", "plan": "pro", "email": "ada@example.com"},
    "event": {"event": "timer", "timestamp": "2026-01-05T09:30:00Z"},
    "entry": {
        "event": "cart_abandoned",
        "cart_id": "c-9f3a",
        "timestamp": datetime(2026, 1, 3, 18, 2, tzinfo=UTC),
        "items": [
            {"name": "Desk lamp", "quantity": 1, "price": "39.00"},
            {"name": "Oak desk", "quantity": 1, "price": "420.00"},
            {"name": "Cable tray", "quantity": 2, "price": "12.50"},
            {"name": "Monitor arm", "quantity": 1, "price": "89.00"},
        ],
    },
    "journey": {"name": "cart_recovery", "version": 4},
    "now": NOW,
}


def _median_us(template: Template, iterations: int, rounds: int = 7) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            template.render(SCOPE)
        samples.append((time.perf_counter_ns() - start) / iterations / 1000)
    return statistics.median(samples)


def run() -> list[tuple[str, float, str]]:
    """(label, median microseconds per render, note) for each case."""
    subject = compile_template(SUBJECT)
    html = compile_template(HTML)
    html_size = len(html.render(SCOPE).encode())
    return [
        ("render subject line", _median_us(subject, 5000), f"{len(SUBJECT)} chars of source"),
        ("render HTML body", _median_us(html, 1000), f"{html_size} bytes of output"),
    ]


if __name__ == "__main__":
    for label, micros, note in run():
        print(f"{label:<22} {micros:9.1f} µs   {note}")
