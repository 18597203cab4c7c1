"""The journey on Temporal: one workflow per profile, against ``temporal server start-dev``.

``python temporal_peer.py --port P --address 127.0.0.1:GRPC --sink FILE`` serves the
shared HTTP front (:mod:`front`) and runs a Temporal worker for the workflow in
:mod:`temporal_journey` and its ``send`` activity, in one process. ``signed_up`` starts
the workflow with the profile's id in its workflow id (a retried event starts nothing
twice); ``followed_up`` signals it. Each 202 comes after the server has recorded the
start or the signal.

Settings: the worker's defaults (the sandboxed workflow runner, 1,000 cached workflows,
the SDK's default task slots and pollers), except that the workflow's own module is
passed through the sandbox (:data:`RUNNER`); activities are ``async`` so they run on the
worker's event loop without a thread pool. The server's settings are the harness's
(``run.py``): its SQLite store, in memory or in a file, and its pragmas.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from starlette.applications import Starlette
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

sys.path.insert(0, str(Path(__file__).parent))

import front
from temporal_journey import Message, Profile, Welcome

TASK_QUEUE = "journeys"
# The sandbox re-imports every module a workflow imports for each workflow it starts,
# unless the module is passed through; the SDK's documentation advises passing through
# modules known to be deterministic, for performance. The workflow's module is one.
RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("temporal_journey")
)


class Engine:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def enter(self, profile: str, plan: str, email: str, wait: float) -> None:
        await self.client.start_workflow(
            Welcome.run,
            Profile(profile, plan, email, wait),
            id=f"welcome-{profile}",
            task_queue=TASK_QUEUE,
        )

    async def follow_up(self, profile: str) -> None:
        await self.client.get_workflow_handle(f"welcome-{profile}").signal(Welcome.followed_up)


class Lazy:
    """The engine once the client is connected, in the app's lifespan."""

    engine: Engine | None = None

    async def enter(self, profile: str, plan: str, email: str, wait: float) -> None:
        assert self.engine is not None
        await self.engine.enter(profile, plan, email, wait)

    async def follow_up(self, profile: str) -> None:
        assert self.engine is not None
        await self.engine.follow_up(profile)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--sink", required=True)
    args = parser.parse_args()
    sink = front.Sink(Path(args.sink))

    @activity.defn(name="send")
    async def send(message: Message) -> None:
        await sink.send(message.profile, message.step, message.template, message.to)

    lazy = Lazy()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = await Client.connect(args.address)
        worker = Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[Welcome],
            activities=[send],
            workflow_runner=RUNNER,
        )
        running = asyncio.create_task(worker.run())
        lazy.engine = Engine(client)
        yield
        await worker.shutdown()
        with suppress(asyncio.CancelledError):
            await running

    front.serve(front.app(lazy, lifespan), args.port)


if __name__ == "__main__":
    main()
