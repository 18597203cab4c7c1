"""A journey as a Mermaid flowchart, for docs and review (renders in GitHub markdown)."""

from __future__ import annotations

from journeyman.domain import model as m
from journeyman.domain.times import DAY_NAMES, format_duration

__all__ = ["edges", "summary", "to_mermaid"]


def to_mermaid(journey: m.Journey) -> str:
    lines = ["flowchart TD"]
    entry = f"entry: {journey.entry_event}"
    if journey.entry_when is not None:
        entry += f"<br/>when {journey.entry_when.source}"
    lines.append(f'  entry(["{_escape(entry)}"]) --> {_node(journey.first)}')
    ends: set[str] = set()
    for step in journey.steps.values():
        lines.append(f"  {_shape(step)}")
        for label, target in edges(step):
            arrow = f' -- "{_escape(label)}" --> ' if label else " --> "
            if target is None:
                ends.add("completed")
                target_node = "end_completed"
            else:
                target_node = _node(target)
            lines.append(f"  {_node(step.id)}{arrow}{target_node}")
    for state in sorted(ends):
        lines.append(f'  end_{state}(["end: {state}"])')
    return "\n".join(lines) + "\n"


def _node(step_id: str) -> str:
    return f"s_{step_id}"  # a prefix keeps step ids such as `end` clear of Mermaid keywords


def _shape(step: m.Step) -> str:
    node = _node(step.id)
    text = _escape(f"{step.id}<br/>{summary(step)}")
    if isinstance(step, m.Branch | m.Split | m.Experiment):
        return f'{node}{{"{text}"}}'
    if isinstance(step, m.Wait | m.WaitFor):
        return f'{node}[/"{text}"/]'
    if isinstance(step, m.End):
        return f'{node}(["{text}"])'
    return f'{node}["{text}"]'


def summary(step: m.Step) -> str:
    """What a step does, in a few words: `wait 20s`, `send welcome_email`."""
    if isinstance(step, m.Wait):
        if step.duration is not None:
            return f"wait {format_duration(step.duration)}"
        if step.until is not None:
            return f"wait until {step.until.source}"
        days = ""
        if step.days is not None and len(step.days) < 7:
            days = " " + ",".join(DAY_NAMES[d] for d in sorted(step.days))
        return f"wait until {step.until_local:%H:%M} local{days}"
    if isinstance(step, m.WaitFor):
        limit = f" up to {format_duration(step.timeout)}" if step.timeout else ""
        return f"wait for {step.awaited}{limit}"
    if isinstance(step, m.Send):
        return f"send {step.template}"
    if isinstance(step, m.Experiment):
        return "experiment " + ", ".join(v.name for v in step.variants)
    if isinstance(step, m.Call):
        return f"call {step.action}"
    if isinstance(step, m.Jump):
        return f"jump to {step.journey}"
    if isinstance(step, m.End):
        return f"end: {step.state}"
    return step.kind.replace("_", " ")


def edges(step: m.Step) -> list[tuple[str, str | None]]:
    """(label, target) of every way out of a step; a None target ends it `completed`."""
    found: list[tuple[str, str | None]]
    if isinstance(step, m.End):
        return []
    if isinstance(step, m.Branch):
        cases: list[tuple[str, str | None]] = [(when.source, goto) for when, goto in step.cases]
        return [*cases, ("otherwise", step.otherwise)]
    if isinstance(step, m.Split):
        total = sum(weight for weight, _ in step.arms)
        return [(f"{weight / total:.0%}", goto) for weight, goto in step.arms]
    if isinstance(step, m.Experiment):
        total = sum(v.weight for v in step.variants)
        return [
            (
                f"{v.name} {v.weight / total:.0%}" + (f" {v.template}" if v.template else ""),
                v.goto or step.next,
            )
            for v in step.variants
        ]
    if isinstance(step, m.WaitFor):
        found = [(step.reaction or step.event, step.on_event or step.next)]
        if step.timeout is not None:
            found.append((f"after {format_duration(step.timeout)}", step.on_timeout or step.next))
        return found
    found = [("", step.next)]
    if isinstance(step, m.Send | m.Call) and step.on_error:
        found.append(("error", step.on_error))
    return found


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
