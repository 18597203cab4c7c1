"""The API process of a deployment with a bus: ingest goes to JetStream, not the database.

``journeyman serve --bus nats://...`` runs a :class:`BusRuntime`. Ingest publishes each
event to JetStream and answers once JetStream has stored it; ``journeyman worker``
processes run the engine, fire timers and deliver. This process still publishes the
workspace and records, for the workers, the stream, its partitions and which journey
versions are current; the admin API reads the database as before.

It changes no instance itself: an operator's stop or resume of a journey becomes one
command per instance, published to the partition of the instance's profile, which the
owner of that partition applies in order with the profile's events.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from journeyman.domain.model import Workspace
from journeyman.domain.state import Event
from journeyman.runtime.processor import Operate
from journeyman.runtime.publish import Plan, Source
from journeyman.runtime.service import Runtime
from journeyman.scaleout.bus import Bus

__all__ = ["BUS_SETTING", "JOURNEYS_SETTING", "BusRuntime"]

# Settings in the database that the workers read: {"stream": ..., "partitions": ...}, and
# the current version of every published journey, {name: version}.
BUS_SETTING = "bus"
JOURNEYS_SETTING = "journeys"
# How long a new segment backfill waits before its triggers go out: the workers follow a
# publish within a second (see journeyman.runtime.following).
SETTLE = timedelta(seconds=3)


class BusRuntime(Runtime):
    """A :class:`Runtime` whose ingest and commands publish to ``bus``.

    Only the backfiller runs here (its triggers go to the bus as events do): the workers
    apply events and commands, fire timers, deliver, and work scheduled runs (their entries
    go to the bus as events do).
    """

    def __init__(self, *args: Any, bus: Bus, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bus = bus
        # The workers run a published workspace within a second or so: a backfill of a
        # segment it brings waits that long, so that its triggers find the segment there.
        self.backfills.settle = SETTLE

    async def start(self) -> None:
        await self.bus.connect()
        try:
            await super().start()
            setting = {"stream": self.bus.stream, "partitions": self.bus.partitions}
            await self.store.set_setting(BUS_SETTING, json.dumps(setting))
        except BaseException:
            await self.bus.close()
            raise

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await self.bus.close()

    def _loops(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [("backfills", self.backfills.run())]

    async def accept(self, events: list[Event]) -> list[str]:
        """Store the events in JetStream: ``accepted`` once it confirmed every one."""
        await self.bus.publish_events(events, self.workspace.events)
        return ["accepted"] * len(events)

    async def _operate(self, commands: list[Operate]) -> None:
        """Store the commands in JetStream, for the owners of their profiles to apply."""
        await self.bus.publish_commands(commands)

    async def publish(
        self, workspace: Workspace, *, dry_run: bool = False, source: Source = "api", by: str = ""
    ) -> Plan:
        """Publish as :class:`Runtime` does, and tell the workers the current versions."""
        plan = await super().publish(workspace, dry_run=dry_run, source=source, by=by)
        if not dry_run:
            await self.store.set_setting(JOURNEYS_SETTING, json.dumps(plan.versions))
        return plan
