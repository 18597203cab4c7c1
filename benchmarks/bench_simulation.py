"""How long `journeyman test` takes for 10,000 profiles through a 30-day journey, and how
much memory it takes for a journey that loops.

- ``run``: writes a workspace with one journey test of 10,000 profiles (identify, sign-up,
  and a purchase for every other profile) to a temporary folder and times the whole
  command, as a user would run it: start-up, YAML, validation, simulation and checking.
- ``looping``: the peak memory (maximum resident set) of the command on a test whose
  journey waits a second and sends, in a loop, with the default limits: it stops at its
  trace limit (see journeyman.journey_tests.TRACE_LIMIT), not after its 30 s.

Run with ``python benchmarks/bench_simulation.py [run|looping]``.
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


LOOPING = """
kind: event
name: signed_up
---
kind: template
name: nudge
channel: email
subject: "Still there?"
text: "Hello again."
---
kind: journey
name: nag
entry: {event: signed_up}
timeout: 36500d
steps:
  - id: settle
    wait: 1s
  - id: remind
    send: nudge
    next: settle
---
kind: test
name: reminds again and again
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 0s
    track: {userId: u1, event: signed_up}
expect:
  - sent: remind
"""

# Runs the command as its only child; prints its exit code, its peak memory in KiB, and 1
# if its trace limit stopped it.
_PEAK = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "int('stopped at the trace limit' in done.stdout))"
)


def looping() -> list[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "journey.yaml").write_text(LOOPING)
        command = [sys.executable, "-m", "journeyman", "test", folder]
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _PEAK, *command], capture_output=True, text=True, check=True
        )
        seconds = time.perf_counter() - began
    code, kib, traced = (int(word) for word in done.stdout.split())
    if code != 1:  # the looping test must fail, stopped
        raise RuntimeError(f"journeyman test exited {code}: {done.stdout}{done.stderr}")
    limit = "its trace limit" if traced else "its time limit"
    note = (
        f"a journey that waits 1 s and sends, in a loop, for one profile; default limits: "
        f"the command failed after {seconds:.1f} s, the test stopped at {limit}"
    )
    return [("journeyman test: a journey that loops, peak memory", kib / 1024, note)]


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["run", "looping"]
    units = {"run": "s", "looping": "MB"}
    for name in chosen:
        for label, value, note in {"run": run, "looping": looping}[name]():
            print(f"{label}: {value:.2f} {units[name]}  ({note})")
