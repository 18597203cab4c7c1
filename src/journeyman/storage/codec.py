"""How every backend turns the runtime's values into rows and back.

Documents (profiles, instances, events, effects) are stored as msgpack blobs and times as
whole milliseconds since the epoch (UTC), the same in every backend, so that a database
moves from one backend to another byte for byte.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from journeyman.domain.reactions import ENGAGEMENT
from journeyman.domain.state import (
    Account,
    CallAction,
    Effect,
    Event,
    Instance,
    Profile,
    SendMessage,
    StepRecord,
)
from journeyman.storage.base import AuditEntry, DeadLetter, MessageRow, PublishedJourney

__all__ = [
    "DEAD_LETTER",
    "audit_entry",
    "audit_row",
    "dead_letter",
    "dead_letter_row",
    "decode_account",
    "decode_effect",
    "decode_event",
    "decode_instance",
    "decode_profile",
    "encode",
    "instance_row",
    "message_row",
    "ms",
    "outbox_row",
    "published_journey",
    "sent_message",
    "step_counts",
    "step_record",
    "time",
    "wake_ms",
    "with_trait",
]

encode = msgspec.msgpack.Encoder().encode
decode_profile = msgspec.msgpack.Decoder(Profile).decode
decode_account = msgspec.msgpack.Decoder(Account).decode
decode_instance = msgspec.msgpack.Decoder(Instance).decode
decode_event = msgspec.msgpack.Decoder(Event).decode
decode_effect = msgspec.msgpack.Decoder(SendMessage | CallAction).decode


def ms(value: datetime) -> int:
    global _last_ms
    last = _last_ms  # one batch writes the same instant many times: remember the last one
    if last[0] is value:
        return last[1]
    found = int(value.timestamp() * 1000)
    _last_ms = (value, found)
    return found


_last_ms: tuple[datetime | None, int] = (None, 0)


def wake_ms(value: datetime) -> int:
    """Rounded up, so that a store's ``due`` never gives an instance before its time."""
    return math.ceil(value.timestamp() * 1000)


def time(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def instance_row(instance: Instance, now: int) -> tuple[Any, ...]:
    """(id, profile_id, journey, version, step, status, wake_at, state, updated_at)."""
    wake = wake_ms(instance.wake_at) if instance.wake_at is not None else None
    return (
        instance.id,
        instance.profile_id,
        instance.journey,
        instance.version,
        instance.step,
        instance.status,
        wake,
        encode(instance),
        now,
    )


def outbox_row(effect: Effect, now: int) -> tuple[Any, ...]:
    """(key, kind, channel, journey, step, profile_id, instance_id, effect, due_at,
    created_at, updated_at) of a newly queued effect."""
    kind, channel = (
        ("send", effect.channel) if isinstance(effect, SendMessage) else ("call", "http")
    )
    return (
        effect.key,
        kind,
        channel,
        effect.journey,
        effect.step,
        effect.profile_id,
        effect.instance_id,
        encode(effect),
        ms(effect.at),
        now,
        now,
    )


def message_row(row: tuple[Any, ...]) -> MessageRow:
    """A message log line from (key, kind, channel, journey, step, profile_id, instance_id,
    status, attempts, detail, created_at, updated_at, effect)."""
    key, kind, channel, journey, step, profile_id, instance_id = row[:7]
    status, attempts, detail, created, updated, blob = row[7:]
    effect = decode_effect(blob)
    content: dict[str, Any]
    if isinstance(effect, SendMessage):
        content = {"to": effect.to, **effect.content}
    else:
        content = {"method": effect.method, "url": effect.url, "body": effect.body}
    return MessageRow(
        key=key,
        kind=kind,
        channel=channel,
        journey=journey,
        step=step,
        profile_id=profile_id,
        instance_id=instance_id,
        status=status,
        attempts=attempts,
        detail=detail,
        created_at=time(created),
        updated_at=time(updated),
        content=content,
    )


def sent_message(profile_id: str, blob: bytes) -> SendMessage | None:
    """The message an outbox row keeps, for the profile that has it now; None for a call."""
    effect = decode_effect(blob)
    if not isinstance(effect, SendMessage):
        return None
    if effect.profile_id == profile_id:
        return effect
    return msgspec.structs.replace(effect, profile_id=profile_id)


# The columns of a dead letter, in the order dead_letter() reads them.
DEAD_LETTER = "id, partition_no, headers, body, error, attempts, first_failed_at, last_failed_at"


def audit_row(entry: AuditEntry) -> tuple[Any, ...]:
    """(at, actor, via, command, journey, instances, journey_version, workspace_version)."""
    return (
        ms(entry.at),
        entry.by,
        entry.via,
        entry.command,
        entry.journey,
        entry.count,
        entry.journey_version,
        entry.workspace_version,
    )


def audit_entry(row: Any) -> AuditEntry:
    """An audit entry from the columns :func:`audit_row` writes, in that order."""
    at, by, via, command, journey, count, journey_version, workspace_version = row
    return AuditEntry(
        time(at), by, via, command, journey, count, journey_version, workspace_version
    )


def dead_letter_row(letter: DeadLetter) -> tuple[Any, ...]:
    """(partition_no, headers, body, error, attempts, first_failed_at, last_failed_at)."""
    return (
        letter.partition,
        json.dumps(letter.headers, sort_keys=True),
        letter.body,
        letter.error,
        letter.attempts,
        ms(letter.first_failed_at),
        ms(letter.last_failed_at),
    )


def dead_letter(row: Any) -> DeadLetter:
    """A dead letter from the columns :data:`DEAD_LETTER`."""
    letter_id, partition, headers, body, error, attempts, first, last = row
    return DeadLetter(
        partition=partition,
        headers=json.loads(headers),
        body=bytes(body),
        error=error,
        attempts=attempts,
        first_failed_at=time(first),
        last_failed_at=time(last),
        id=letter_id,
    )


def step_record(row: Any) -> StepRecord:
    """A step record from (profile_id, instance_id, journey, step, outcome, detail, at)."""
    profile_id, instance_id, journey, step, outcome, detail, at = row
    return StepRecord(
        profile_id=profile_id,
        instance_id=instance_id,
        journey=journey,
        step=step,
        outcome=outcome,
        detail=detail,
        at=time(at),
    )


def published_journey(row: Any) -> PublishedJourney:
    """A journey version from (name, version, digest, document)."""
    name, version, digest, document = row
    return PublishedJourney(name, version, digest, msgspec.json.decode(document))


def step_counts(records: Iterable[Any], waiting: Iterable[Any]) -> dict[str, dict[str, int]]:
    """What :meth:`ReadModel.step_counts` answers, from rows of (step, outcome, count, how
    many left, how many instances) and of (step, instances waiting there). A reaction to a
    message is also counted once per instance, as ``unique_<outcome>``."""
    counts: dict[str, dict[str, int]] = {}
    for step, outcome, count, left, instances in records:
        counts.setdefault(step, {})[outcome] = count
        if outcome in ENGAGEMENT:
            counts[step][f"unique_{outcome}"] = instances
        if left:
            counts[step]["left"] = counts[step].get("left", 0) + left
    for step, count in waiting:
        counts.setdefault(step, {})["waiting_now"] = count
    return counts


def with_trait(state: bytes, trait: str, value: str) -> str | None:
    """The id of the stored profile ``state`` if its trait ``trait`` is ``value``. The
    console's search by trait finds the rows holding the text first, then asks this."""
    profile = decode_profile(state)
    return profile.id if profile.traits.get(trait) == value else None


NAME_TRAITS = ("firstName", "lastName", "name")


def names_start(state: bytes, text: str) -> bool:
    """Whether a word of a name trait (firstName, lastName, name) of the stored profile
    ``state`` starts with ``text``, case ignored: a console search by name."""
    traits = decode_profile(state).traits
    wanted = text.casefold()
    for trait in NAME_TRAITS:
        value = traits.get(trait)
        if isinstance(value, str):
            name = value.casefold()
            if name.startswith(wanted) or any(w.startswith(wanted) for w in name.split()):
                return True
    return False


def like_escape(text: str) -> str:
    """``text`` taken literally in a LIKE pattern (escaped with a backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_prefix(text: str) -> str:
    """A LIKE pattern of what starts with ``text``, lower-cased."""
    return like_escape(text.lower()) + "%"
