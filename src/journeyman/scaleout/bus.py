"""The event bus: NATS JetStream between the HTTP API and the workers.

With ``journeyman serve --bus nats://...``, the API does not commit events itself: it
publishes each one to JetStream and answers 202 only once JetStream has stored it (a
publish with acknowledgement). ``journeyman worker`` processes (see
:mod:`journeyman.scaleout.worker`).

The stream (``JOURNEYMAN`` unless named otherwise) has one subject per partition,
``<stream>.events.<n>``; an event goes to the partition of its profile key (see
:func:`partition_key`), so one profile's events stay in one partition, in the order they
were stored. The stream is a work queue: a message is deleted once a worker acknowledges
it, which a worker does only after the state it produced is committed. Everything else
that moves an instance travels the same way, to the partition of its profile, so that the
worker that owns a profile's events applies it, in order with them, and no two processes
ever change one profile at once: due timers (up to 200 in a message), the delivery
outcomes the engine must learn (from whichever worker delivered the message), and an
operator's stop and resume (from the API process). A header says which of these a
message is; an event has none.

Each partition has one durable pull consumer. A worker that takes a partition makes its
consumer anew: it then delivers every message not yet acknowledged, oldest first, at once
(rather than after the acknowledgement wait of whoever held it before). What was applied
but not acknowledged comes again and is recognised by its messageId.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from journeyman.domain.core import Timer
from journeyman.domain.ingest import identity_of
from journeyman.domain.model import EventDefinition
from journeyman.domain.state import CallAction, Event, SendMessage
from journeyman.errors import JourneymanError
from journeyman.runtime.processor import DeliveryResult, Operate, Overloaded, TimerDue
from journeyman.storage.base import DeadLetter
from journeyman.storage.codec import decode_event, encode, wake_ms

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_STREAM",
    "Bus",
    "BusUnavailable",
    "decode",
    "decode_message",
    "partition_key",
    "partition_of",
]

log = logging.getLogger("journeyman.bus")

DEFAULT_STREAM = "JOURNEYMAN"
DEFAULT_PARTITIONS = 16
CONNECT_LIMIT = 5.0  # seconds to reach NATS at start, before giving up with an error
PUBLISH_TIMEOUT = 2.0  # seconds JetStream gets to store a message before the API says 503
MAX_PENDING = 20_000  # publishes waiting for JetStream at once, beyond which the API says 429
ACK_WAIT = 30.0  # seconds before JetStream sends an unacknowledged message to its owner again
DUPLICATE_WINDOW = 120.0  # seconds JetStream drops a second publish with the same messageId

TIMERS_PER_MESSAGE = 200  # due timers of one partition that travel in one message
# The header of a message of due timers; its body is [[instance, profile], ...]. (A message
# with the header ``Journeyman-Timer`` holds one [instance, profile].)
_TIMERS = "Journeyman-Timers"
_TIMER = "Journeyman-Timer"
_timers_body = msgspec.msgpack.Decoder(list[tuple[str, str]]).decode
_timer_body = msgspec.msgpack.Decoder(tuple[str, str]).decode
# header of a delivery outcome; its body is [outbox id, sent?, detail, effect]
_OUTCOME = "Journeyman-Outcome"
_outcome_body = msgspec.msgpack.Decoder(tuple[int, bool, str, SendMessage | CallAction]).decode
# header of an operator's command (its value: stop or resume); its body is
# [instance, profile, seq or nil]
_COMMAND = "Journeyman-Command"
_command_body = msgspec.msgpack.Decoder(tuple[str, str, int | None]).decode
_COMMANDS: dict[str, Literal["resume", "stop"]] = {"resume": "resume", "stop": "stop"}


class BusUnavailable(JourneymanError):
    """JetStream did not store a message (unreachable, or too slow): nothing to ack."""


def partition_of(key: str, partitions: int) -> int:
    """The partition of a profile key: the same in every process and every run (CRC-32,
    not Python's ``hash``, which is salted per process)."""
    return zlib.crc32(key.encode()) % partitions


def partition_key(event: Event, definitions: Mapping[str, EventDefinition]) -> str:
    """What names the event's profile before any lookup: the normalised email for an event
    whose profile is named by email, else the userId, else the anonymousId.

    The API computes it without the database, so events that name a profile the same way
    share a partition. An anonymous visitor's events before an identify that links them to
    a userId are keyed by the anonymous id, and may be applied after the identify.
    """
    definition = definitions.get(event.name)
    if event.type != "identify" and definition is not None and definition.identity == "email":
        return identity_of(event, definition)[1]
    return event.profile_id


def decode(msg: Msg) -> list[Event | TimerDue | DeliveryResult | Operate]:
    """The triggers a bus message carries: due timers, or one event, outcome or command."""
    return decode_message(msg.headers or {}, msg.data)


def decode_message(
    headers: Mapping[str, str], data: bytes
) -> list[Event | TimerDue | DeliveryResult | Operate]:
    """The triggers of a message's headers and body (as :func:`decode`, for a message kept
    apart, such as a dead letter)."""
    if _TIMERS in headers:
        return [TimerDue(i, p) for i, p in _timers_body(data)]
    if _TIMER in headers:
        return [TimerDue(*_timer_body(data))]
    if _OUTCOME in headers:
        outbox_id, ok, detail, effect = _outcome_body(data)
        return [DeliveryResult(effect, ok, detail, told=outbox_id)]
    if _COMMAND in headers:
        command = _COMMANDS.get(headers[_COMMAND])
        if command is None:
            raise ValueError(f"no such command: {headers[_COMMAND]!r}")
        instance_id, profile_id, seq = _command_body(data)
        return [Operate(instance_id, profile_id, command, seq)]
    return [decode_event(data)]


class Bus:
    """One connection to NATS, and the stream of ``partitions`` subjects named ``stream``."""

    def __init__(
        self,
        url: str,
        stream: str = DEFAULT_STREAM,
        partitions: int = DEFAULT_PARTITIONS,
        *,
        timeout: float = PUBLISH_TIMEOUT,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.url = url
        self.stream = stream
        self.partitions = partitions
        self.timeout = timeout
        self.max_pending = max_pending
        self.pending = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._closing = False

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("the bus is not connected")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect (reconnecting for ever after a loss) and make the stream if it is missing."""
        try:
            # nats-py retries a first connection as long as later ones (for ever): bound it.
            async with asyncio.timeout(CONNECT_LIMIT):
                self._nc = await self._connect()
        except (OSError, TimeoutError, nats.errors.Error) as error:
            reason = str(error) or "no answer in time"
            raise BusUnavailable(f"cannot reach NATS at {self.url}: {reason}") from None
        self._js = self._nc.jetstream()
        await self._ensure_stream()

    async def _connect(self) -> Client:
        return await nats.connect(
            self.url,
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=_quiet,
            disconnected_cb=self._disconnected,
            reconnected_cb=_reconnected,
        )

    async def _ensure_stream(self) -> None:
        try:
            await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.stream}.events.*"],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW,
                )
            )

    async def close(self) -> None:
        self._closing = True
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = self._js = None

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warning("lost the connection to NATS; reconnecting")

    def subject(self, partition: int) -> str:
        return f"{self.stream}.events.{partition}"

    # publishing

    async def publish_events(
        self, events: Sequence[Event], definitions: Mapping[str, EventDefinition]
    ) -> list[Event]:
        """Store the events in JetStream, or raise: :class:`Overloaded` when too many
        publishes wait already, :class:`BusUnavailable` when JetStream did not confirm.

        Returns the events as published: one without a messageId gets one, so that a
        worker that applies it and dies before acknowledging it does not apply it twice.
        """
        sent = [e if e.message_id else _with_message_id(e) for e in events]
        messages = [
            (self.subject(partition_of(partition_key(e, definitions), self.partitions)), e)
            for e in sent
        ]
        await self._publish_all(
            [(subject, encode(e), {"Nats-Msg-Id": str(e.message_id)}) for subject, e in messages]
        )
        return sent

    async def publish_timers(self, due: Sequence[Timer]) -> None:
        """Send due timers to the partitions of their profiles (see the module docstring),
        many to a message.

        A timer may travel twice (a claim whose publish failed is claimed again once its
        lease has passed, maybe by another worker): the engine wakes an instance only
        while it waits with a wake time that has come, so the second one does nothing.
        """
        by_partition: dict[int, list[Timer]] = {}
        for instance in due:
            if instance.wake_at is not None:
                partition = partition_of(instance.profile_id, self.partitions)
                by_partition.setdefault(partition, []).append(instance)
        messages = []
        for partition, instances in by_partition.items():
            for start in range(0, len(instances), TIMERS_PER_MESSAGE):
                chunk = instances[start : start + TIMERS_PER_MESSAGE]
                body = encode([(i.id, i.profile_id) for i in chunk])
                # The same timers at the same wake times, published again, are one message.
                wakes = encode([wake_ms(i.wake_at) for i in chunk if i.wake_at is not None])
                key = "timers:" + hashlib.blake2b(body + wakes, digest_size=16).hexdigest()
                headers = {_TIMERS: str(len(chunk)), "Nats-Msg-Id": key}
                messages.append((self.subject(partition), body, headers))
        await self._publish_all(messages)

    async def publish_outcomes(self, outcomes: Sequence[DeliveryResult]) -> None:
        """Send delivery outcomes, settled already, to the partitions of their profiles.

        Each names its outbox row (``told``), and so does its messageId: JetStream drops a
        second publish of it within its duplicate window, the owner's commit any later one.
        """
        await self._publish_all(
            [
                (
                    self.subject(partition_of(o.effect.profile_id, self.partitions)),
                    encode((o.told, o.ok, o.detail, o.effect)),
                    {_OUTCOME: "1", "Nats-Msg-Id": f"outcome:{o.told}"},
                )
                for o in outcomes
                if o.told is not None
            ]
        )

    async def publish_commands(self, commands: Sequence[Operate]) -> None:
        """Send an operator's commands to the partitions of their instances' profiles."""
        await self._publish_all(
            [
                (
                    self.subject(partition_of(c.profile_id, self.partitions)),
                    encode((c.instance_id, c.profile_id, c.seq)),
                    {_COMMAND: c.command, "Nats-Msg-Id": _command_id(c)},
                )
                for c in commands
            ]
        )

    async def republish(self, letter: DeadLetter) -> int:
        """Publish a dead letter's message again, as it came, to its partition: the
        partition's owner applies it as any other. Its JetStream messageId names the
        dead letter, so that a replay sent twice within the duplicate window is stored
        once (an event is applied once anyway, by its own messageId)."""
        partition = letter.partition % self.partitions
        headers = {**letter.headers, "Nats-Msg-Id": f"replay:{letter.id}"}
        await self._publish_all([(self.subject(partition), letter.body, headers)])
        return partition

    async def _publish_all(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
        if self.pending + len(messages) > self.max_pending:
            raise Overloaded(f"{self.pending} messages wait for the bus")
        self.pending += len(messages)
        try:
            await asyncio.gather(*(self._publish(*message) for message in messages))
        finally:
            self.pending -= len(messages)

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            await self.js.publish(subject, body, timeout=self.timeout, headers=headers)
        except (nats.errors.Error, OSError, TimeoutError, RuntimeError) as error:
            raise BusUnavailable(f"JetStream did not store a message: {error!r}") from None

    # consuming

    async def take(self, partition: int, *, max_pending: int) -> JetStreamContext.PullSubscription:
        """A pull subscription to the partition's consumer, made anew (see the module
        docstring): it starts at the oldest message not yet acknowledged."""
        name = f"p{partition}"
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_consumer(self.stream, name)
        await self.js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=name,
                filter_subject=self.subject(partition),
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT,
                max_ack_pending=max_pending,
            ),
        )
        return await self.js.pull_subscribe_bind(durable=name, stream=self.stream)


def _command_id(command: Operate) -> str:
    """A stop is one per instance; a resume, one per hold (see :class:`Operate`)."""
    if command.seq is None:
        return f"{command.command}:{command.instance_id}"
    return f"{command.command}:{command.instance_id}:{command.seq}"


def _with_message_id(event: Event) -> Event:
    return msgspec.structs.replace(event, message_id=f"jm-{uuid.uuid4().hex}")


async def _quiet(error: Any) -> None:
    log.debug("NATS: %r", error)


async def _reconnected() -> None:
    log.warning("connected to NATS again")
