"""Small builders and lookups shared by the engine, rules and runner tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from journeyman.domain.state import Instance, StepRecord
from journeyman.domain.times import parse_duration
from journeyman.simulator import Simulator
from tests.conftest import START

Simulate = Callable[..., Simulator]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def after(duration: str, start: datetime = START) -> datetime:
    """The time ``duration`` (``1h30m``) after ``start``."""
    return start + parse_duration(duration)


def journey(*steps: str, name: str = "j", entry: str = "{event: signed_up}", **keys: str) -> str:
    """A journey document: ``steps`` are YAML lists of steps, ``keys`` its other settings."""
    head = ["kind: journey", f"name: {name}", f"entry: {entry}"]
    head += [f"{key}: {value}" for key, value in keys.items()]
    body = [textwrap.indent(textwrap.dedent(block).strip(), "  ") for block in steps]
    return "\n".join([*head, "steps:", *body])


def sign_up(
    sim: Simulator, user: str = "u1", at: datetime = START, plan: str = "pro", **traits: Any
) -> None:
    """Identify ``user`` (with an email unless ``email=None``), then track ``signed_up``."""
    traits = {"email": f"{user}@example.com", **traits}
    sim.identify({"userId": user, "traits": traits}, at)
    sim.track({"userId": user, "event": "signed_up", "properties": {"plan": plan}}, at)


def outcomes(sim: Simulator, step: str, journey: str = "j") -> list[str]:
    """Every record outcome of one step, in order."""
    return [r.outcome for r in sim.records if r.step == step and r.journey == journey]


def record(sim: Simulator, step: str | None, outcome: str, journey: str = "j") -> StepRecord:
    """The one record of ``step`` with ``outcome``."""
    (found,) = [
        r for r in sim.records if (r.step, r.outcome, r.journey) == (step, outcome, journey)
    ]
    return found


def the_instance(sim: Simulator, journey: str = "j") -> Instance:
    (found,) = [i for i in sim.instances.values() if i.journey == journey]
    return found


def end_states(sim: Simulator, journey: str = "j") -> list[str | None]:
    return [i.end_state for i in sim.instances.values() if i.journey == journey]


def sent(sim: Simulator) -> list[tuple[str, datetime]]:
    """(step, time) of every message handed to a channel."""
    return [(m.step, m.at) for m in sim.messages]
