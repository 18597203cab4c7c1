"""Engine transitions per second: profiles through a 6-step journey, engine calls only.

Run with ``python benchmarks/bench_engine.py``.
"""

from __future__ import annotations

import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from journeyman import Engine, Event, Instance, Profile, Workspace, load_workspace

WORKSPACE = """
kind: event
name: signed_up
schema: {type: object, properties: {plan: {type: string}}}
---
kind: template
name: welcome
channel: email
subject: "Hi {{ profile.firstName | default: 'there' }}, welcome to {{ entry.plan }}"
text: "Thank you for signing up."
---
kind: rules
caps: [{channels: [email], max: 5, per: 7d}]
---
kind: journey
name: six_steps
entry: {event: signed_up, when: 'event.plan != "internal"'}
steps:
  - id: check
    branch:
      - when: profile.plan == "pro" and event.plan != "free"
        goto: tag
      - otherwise: tag
  - id: tag
    update_profile: {set: {stage: welcomed}}
  - id: welcome
    send: welcome
  - id: pause
    wait: 1d
  - id: group
    split: [{weight: 50, goto: done}, {weight: 50, goto: done}]
  - id: done
    end: finished
"""

START = datetime(2026, 1, 5, tzinfo=UTC)


def load() -> Workspace:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "ws.yaml").write_text(textwrap.dedent(WORKSPACE))
        workspace = load_workspace(folder).workspace
    assert workspace is not None
    return workspace


def run(profiles: int = 20_000) -> list[tuple[str, float, str]]:
    engine = Engine(load())
    inputs = [
        (
            Profile(id=f"p{i}", traits={"email": f"p{i}@example.com", "firstName": "Ada"}),
            Event(
                name="signed_up", profile_id=f"p{i}", timestamp=START, properties={"plan": "pro"}
            ),
        )
        for i in range(profiles)
    ]
    waiting: list[tuple[Profile, Instance]] = []
    steps = 0
    began = time.perf_counter()
    for profile, event in inputs:
        outcome = engine.on_event(profile, (), event, START)
        instance = next(iter(outcome.instances.values()))
        waiting.append((outcome.profile, instance))
    later = START + timedelta(days=1)
    for profile, instance in waiting:
        outcome = engine.on_timer(profile, [instance], instance, later)
        steps += next(iter(outcome.instances.values())).seq
    seconds = time.perf_counter() - began
    per_second = steps / seconds
    note = f"{profiles:,} profiles x 6 steps (branch, update, send+render, wait, split, end)"
    return [("engine transitions per second (one core)", per_second, note)]


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label}: {value:,.0f}/s  ({note})")
