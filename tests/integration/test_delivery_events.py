"""Delivery outcomes reach the profile as events: ``message_sent`` when the provider takes
the message, ``message_failed`` when the dispatcher gives up, and ``message_bounced`` (hard)
when the mail server refuses the address itself.

A real SMTP server on 127.0.0.1 answers 550 to RCPT TO for one address and 451 for another;
the dispatcher runs over a real store of each selected backend with the processor's loop
going.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from journeyman.channels.smtp import SmtpChannel
from journeyman.domain.feedback import delivery_events
from journeyman.domain.state import Event
from journeyman.runtime.dispatcher import Dispatcher, RetryPolicy
from journeyman.runtime.processor import Processor
from journeyman.storage import Database
from tests.integration.test_processor import WELCOME, Build, Clock, identify, live, track
from tests.servers import SmtpServer

GONE = "gone@example.com"  # 550: no such user
LATER = "later@example.com"  # 451: try again later


class PickySmtpServer(SmtpServer):
    """Refuses GONE for good and LATER for now; takes everyone else."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == GONE:
            return "550 5.1.1 <gone@example.com>: Recipient address rejected: no such user"
        if address == LATER:
            return "451 4.3.0 Mailbox temporarily unavailable"
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
def smtp() -> Iterator[PickySmtpServer]:
    with PickySmtpServer() as server:
        yield server


def signed_up(workspace: Any, user: str, address: str) -> list[Event]:
    return [
        identify({"userId": user, "traits": {"email": address}}),
        track(workspace, {"userId": user}),
    ]


def dispatcher(store: Database, processor: Processor, port: int, clock: Clock) -> Dispatcher:
    email = SmtpChannel(
        "email", host="127.0.0.1", port=port, sender="j@example.com", security="none"
    )
    policy = RetryPolicy(attempts=2, base=timedelta(seconds=1))
    return Dispatcher(store, processor, {"email": email}, clock, env={}, policy=policy)


async def reactions(store: Database, user: str) -> dict[str, dict[str, Any]]:
    """The profile's reaction events, by name."""
    history = await store.history(user)
    return {
        s.event.name: s.event.properties for s in history if s.event.name.startswith("message_")
    }


def test_sent_failed_and_bounced_messages_land_in_the_profiles_history(
    store: Database, workspace: Build, smtp: PickySmtpServer
) -> None:
    ws = workspace(WELCOME)
    clock = Clock()

    async def test(processor: Processor) -> None:
        users = {"ok": "ok@example.com", "gone": GONE, "later": LATER}
        for user, address in users.items():
            await processor.submit(signed_up(ws, user, address))
        sending = dispatcher(store, processor, smtp.port, clock)
        await sending.deliver(await store.claim(clock(), 100))
        clock.now += timedelta(minutes=5)  # the 451 comes due again, and is given up
        await sending.deliver(await store.claim(clock(), 100))

        sent = await reactions(store, "ok")
        assert list(sent) == ["message_sent"]
        assert sent["message_sent"]["journey"] == "welcome"
        assert sent["message_sent"]["step"] == "greet"
        assert sent["message_sent"]["channel"] == "email"

        gone = await reactions(store, "gone")
        assert set(gone) == {"message_failed", "message_bounced"}
        bounce = gone["message_bounced"]
        assert bounce["bounce"] == "hard"
        assert bounce["address"] == GONE
        assert bounce["reason"].startswith("550 5.1.1")
        assert bounce["message"] == gone["message_failed"]["message"]

        later = await reactions(store, "later")
        assert list(later) == ["message_failed"]  # given up after a 451: no bounce
        assert "451 4.3.0" in later["message_failed"]["reason"]
        statuses = {m.profile_id: m.status for m in await store.messages(limit=10)}
        assert statuses == {"ok": "sent", "gone": "failed", "later": "failed"}

    live(store, ws, test, clock)


def test_an_outcome_recorded_again_is_applied_once(
    store: Database, workspace: Build, smtp: PickySmtpServer
) -> None:
    """After a crash between the events' commit and the row's, the message goes out again
    and its events come again: they are duplicates."""
    ws = workspace(WELCOME)
    clock = Clock()

    async def test(processor: Processor) -> None:
        await processor.submit(signed_up(ws, "gone", GONE))
        claimed = await store.claim(clock(), 100)
        await dispatcher(store, processor, smtp.port, clock).deliver(claimed)
        message = claimed[0].effect
        [stored] = await store.messages(limit=10)
        again = delivery_events(message, False, stored.detail, clock())
        assert [e.name for e in again] == ["message_failed", "message_bounced"]
        assert await processor.submit(again) == ["duplicate", "duplicate"]
        names = [s.event.name for s in await store.history("gone")]
        assert names.count("message_bounced") == 1

    live(store, ws, test, clock)
