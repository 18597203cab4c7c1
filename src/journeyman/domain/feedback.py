"""Delivery outcomes as reaction events: ``message_sent``, ``message_failed``, and the
hard bounce a mail server reports at send time.

:func:`delivery_events` is the one place that turns how a delivery went (the message,
whether the provider accepted it, the detail kept in the outbox) into events. Serve's
dispatcher and a worker that owns the profile both call it, so a message's outcome reads
the same wherever it was sent. Each event's messageId is derived from the message key
(``sent:{key}``, ``failed:{key}``, ``bounced:{key}``): an outcome recorded again after a
crash is applied once.

A channel marks a permanent refusal of the recipient's address by starting the detail with
:data:`HARD_BOUNCE`; the detail is all an outcome carries from the delivering process to
the profile's owner (through the outbox), so the mark travels with it.

Pure: the time is given.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from journeyman.domain.reactions import reaction_event
from journeyman.domain.state import Effect, Event, SendMessage

__all__ = ["HARD_BOUNCE", "delivery_events", "hard_bounce_reason"]

#: How a failed delivery's detail starts when the provider refused the address for good.
HARD_BOUNCE = "hard bounce: "


def hard_bounce_reason(detail: str) -> str | None:
    """The provider's answer, if ``detail`` says the address was refused for good."""
    return detail[len(HARD_BOUNCE) :] if detail.startswith(HARD_BOUNCE) else None


def delivery_events(effect: Effect, ok: bool, detail: str, at: datetime) -> list[Event]:
    """The events a final delivery outcome makes: ``message_sent`` (accepted), or
    ``message_failed`` with ``reason`` (given up), and with a hard bounce also
    ``message_bounced`` (``bounce: hard``, ``address``, ``reason``). None for a call."""
    if not isinstance(effect, SendMessage):
        return []
    if ok:
        return [
            _made_for(reaction_event("message_sent", effect, at, message_id=f"sent:{effect.key}"))
        ]
    failed = reaction_event(
        "message_failed", effect, at, message_id=f"failed:{effect.key}", reason=detail
    )
    reason = hard_bounce_reason(detail)
    if reason is None or not effect.to:
        return [_made_for(failed)]
    bounced = reaction_event(
        "message_bounced",
        effect,
        at,
        message_id=f"bounced:{effect.key}",
        bounce="hard",
        address=effect.to,
        reason=reason,
    )
    return [_made_for(failed), _made_for(bounced)]


def _made_for(event: Event) -> Event:
    """The event, naming its profile also as an anonymous id: if the message was made for
    a visitor who has signed in since (whose profile merged into the known one), the
    event goes to the known profile, as the message's instance did, when it is applied."""
    return msgspec.structs.replace(event, anonymous_id=event.profile_id)
