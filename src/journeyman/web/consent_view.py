"""A profile's consent as the admin API and the console show it: each topic and channel,
the suppression list, and the audit of who changed what, when.

The audit is read from the profile's history: every event there that changes consent
(:func:`journeyman.domain.consent.change`), newest first, among its latest
:data:`AUDIT_EVENTS` events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from journeyman.domain import model as m
from journeyman.domain.consent import change, consent_channels, topic_wanted
from journeyman.domain.state import Profile, Suppression
from journeyman.runtime.service import Runtime
from journeyman.storage.base import StoredEvent

__all__ = ["AUDIT_EVENTS", "audit", "consent_of", "consent_view"]

AUDIT_EVENTS = 1000  # the latest events of a profile the audit looks through


async def consent_of(runtime: Runtime, profile: Profile) -> dict[str, Any]:
    """``GET /v1/profiles/{id}/consent``: :func:`consent_view` with the profile's audit."""
    history = await runtime.reads.history(profile.id, limit=AUDIT_EVENTS)
    return consent_view(profile, runtime.workspace, history)


def consent_view(
    profile: Profile, workspace: m.Workspace, history: Sequence[StoredEvent]
) -> dict[str, Any]:
    traits = profile.traits
    chosen = _mapping(traits, "subscriptions")
    topics = workspace.subscriptions
    listed = [
        {
            "name": name,
            "channel": topic.channel,
            "description": topic.description,
            "default": topic.default,
            "subscribed": topic_wanted(traits, name, topics),
            "chosen": isinstance(chosen.get(name), bool),
        }
        for name, topic in sorted(topics.items())
    ]
    # Choices kept for topics the workspace no longer has.
    listed += [
        {"name": name, "channel": None, "subscribed": value, "chosen": True}
        for name, value in sorted(chosen.items())
        if name not in topics
    ]
    said = _mapping(traits, "consent")
    channels = sorted({*consent_channels(workspace), *said})
    return {
        "profile": profile.id,
        "unsubscribed": traits.get("unsubscribed") is True,
        "topics": listed,
        "channels": [{"name": c, "consent": said.get(c) is not False} for c in channels],
        "suppressed": [
            {"address": address, **_suppression(entry)}
            for address, entry in sorted(profile.suppressed.items())
        ],
        "audit": audit(history),
    }


def audit(history: Sequence[StoredEvent]) -> list[dict[str, Any]]:
    """The consent changes among ``history`` (newest first, as it is)."""
    entries = []
    for stored in history:
        event = stored.event
        found = change(event)
        if found is not None:
            entries.append(
                {
                    "at": event.timestamp,
                    "received_at": stored.received_at,
                    "event": event.name,
                    "type": event.type,
                    **found,
                }
            )
    return entries


def _suppression(entry: Suppression) -> dict[str, Any]:
    return {
        "reason": entry.reason,
        "source": entry.source,
        "at": entry.at,
        "by": entry.by or None,
    }


def _mapping(traits: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = traits.get(name)
    return dict(value) if isinstance(value, dict) else {}
