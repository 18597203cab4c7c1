"""How long `journeyman test` takes for 10,000 profiles through a 30-day journey.

Writes a workspace with one journey test of 10,000 profiles (identify, sign-up, and a
purchase for every other profile) to a temporary folder and times the whole command, as a
user would run it: start-up, YAML, validation, simulation and checking.

Run with ``python benchmarks/bench_simulation.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

JOURNEY = """
kind: event
name: signed_up
schema: {type: object, required: [plan], properties: {plan: {type: string}}}
---
kind: event
name: purchased
schema: {type: object, properties: {total: {type: number}}}
---
kind: template
name: welcome
channel: email
subject: "Welcome, {{ profile.firstName | default: 'friend' }}"
text: "Your {{ entry.plan }} plan is ready."
---
kind: template
name: nudge
channel: email
subject: "Still thinking about it?"
text: "Here is 10% off."
---
kind: template
name: checkin
channel: email
subject: "How is it going, {{ profile.firstName }}?"
text: "One month in."
---
kind: journey
name: thirty_days
entry: {event: signed_up}
timeout: 31d
steps:
  - id: settle
    wait: 1h
  - id: welcome
    send: welcome
  - id: await_purchase
    wait_for: {event: purchased, timeout: 7d}
    on_event: bought
    on_timeout: nudge
  - id: nudge
    send: nudge
  - id: later
    wait: 7d
  - id: by_plan
    branch:
      - when: entry.plan == "pro"
        goto: month
      - otherwise: month
  - id: month
    wait: {until_local: "10:00", days: [mon, tue, wed, thu, fri]}
  - id: bought
    wait: 14d
  - id: checkin
    send: checkin
  - id: done
    end: finished
"""


def write_workspace(folder: Path, profiles: int) -> None:
    Path(folder, "journey.yaml").write_text(textwrap.dedent(JOURNEY))
    events = []
    for i in range(profiles):
        user = f"u{i}"
        minute = f"{i % 1440}m"
        traits = {"email": f"{user}@example.com", "firstName": "Ada"}
        events.append({"at": minute, "identify": {"userId": user, "traits": traits}})
        plan = "pro" if i % 3 == 0 else "free"
        track = {"userId": user, "event": "signed_up", "properties": {"plan": plan}}
        events.append({"at": minute, "track": track})
        if i % 2 == 0:
            bought = {"userId": user, "event": "purchased", "properties": {"total": 30}}
            events.append({"at": "3d", "track": bought})
    test = {
        "kind": "test",
        "name": f"{profiles} profiles through a 30-day journey",
        "events": events,
        "expect": [
            {"ended": "finished", "times": profiles},
            {"sent": "nudge", "times": profiles // 2},
            {"sent": "checkin", "times": profiles},
        ],
    }
    # JSON is YAML, and journeyman reads a JSON file with a JSON parser: fast for 25,000 events.
    Path(folder, "test.yaml").write_text(json.dumps(test))


def run(profiles: int = 10_000) -> list[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory() as folder:
        write_workspace(Path(folder), profiles)
        command = [sys.executable, "-m", "journeyman", "test", folder]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"journeyman test failed:\n{done.stdout}\n{done.stderr}")
    note = f"{profiles:,} profiles, {profiles * 2.5:,.0f} events, 30 days; whole command"
    return [("journeyman test: 10,000 profiles x 30-day journey", seconds, note)]


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label}: {value:.2f} s  ({note})")
