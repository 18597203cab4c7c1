"""A profile's story, readable: what each journey did with it, and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from journeyman.storage import open_store, sqlite_path
from journeyman.storage.base import ReadModel

__all__ = ["render_trace"]


async def render_trace(url: str, profile_id: str) -> list[str] | None:
    """The lines of ``journeyman trace``; None if the store has no such profile."""
    path = sqlite_path(url) if url.startswith("sqlite:///") else None
    if path is not None and not path.exists():
        return None  # opening would create an empty database
    store = open_store(url)
    await store.open()
    try:
        return await _lines(store, profile_id)
    finally:
        await store.close()


async def _lines(store: ReadModel, profile_id: str) -> list[str] | None:
    profile = await store.profile(profile_id)
    if profile is None:
        return None
    records = await store.trace(profile_id)
    instances = await store.instances_of(profile_id)
    messages = await store.messages(profile=profile_id, limit=1000)
    lines = [f"profile {profile.id}", f"  traits  {_traits(profile.traits)}"]
    for instance in reversed(instances):  # oldest first, like the records
        state = instance.status
        if instance.status == "ended":
            state = f"ended {instance.end_state} at {_time(instance.ended_at)}"
        elif instance.wake_at is not None:
            state = f"waiting at {instance.step} until {_time(instance.wake_at)}"
        lines += ["", f"journey {instance.journey} v{instance.version}: {state}"]
        for record in records:
            if record.instance_id == instance.id:
                where = record.step or ""
                detail = f"  {record.detail}" if record.detail else ""
                lines.append(f"  {_time(record.at)}  {where:<16} {record.outcome:<10}{detail}")
    refused = [r for r in records if r.instance_id is None]
    if refused:
        lines += ["", "events that started nothing"]
        lines += [f"  {_time(r.at)}  {r.journey}: {r.detail}" for r in refused]
    if messages:
        lines += ["", "messages"]
        for message in reversed(messages):
            title = message.content.get("subject") or message.content.get("body") or ""
            lines.append(
                f"  {_time(message.created_at)}  {message.journey}.{message.step} "
                f"{message.channel} {message.status}: {str(title)[:60]}"
                + (f"  ({message.detail})" if message.detail else "")
            )
    return lines


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _traits(traits: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in traits.items()) or "(none)"
