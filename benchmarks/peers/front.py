"""The HTTP front every peer but journeyman runs: the same ingest calls, the same sink.

A peer built on a durable-execution engine needs a web process that turns events into
workflow starts and messages; this is that process's HTTP part, shared so that only the
engine differs. It answers ``POST /v1/track`` in the Segment shape the load generator
sends (``signed_up`` and ``signed_up_soon`` start a profile's journey, ``followed_up``
is the event the journey waits for) with 202 once the engine has durably recorded the
call, as journeyman does after its commit. Messages go to the sink: journeyman's own
file-channel writer, one fsync'd JSON line per message, batched the same way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.channels.file import LineWriter

# The wait for the follow-up: 24h, or 10s for the timer-lateness run (``_soon``).
WAITS = {"signed_up": 24 * 3600.0, "signed_up_soon": 10.0}
ACCEPTED = b'{"accepted":1}'


class Engine(Protocol):
    async def enter(self, profile: str, plan: str, email: str, wait: float) -> None: ...

    async def follow_up(self, profile: str) -> None: ...


class Sink:
    """Where every peer's messages go: one JSON line each, appended and fsync'd."""

    def __init__(self, path: Path) -> None:
        self.writer = LineWriter(path)

    async def send(self, profile: str, step: str, template: str, to: str) -> None:
        line = {
            "profile_id": profile,
            "step": step,
            "template": template,
            "to": to,
            "at": datetime.now(UTC).isoformat(),
        }
        await self.writer.write(json.dumps(line).encode() + b"\n")


def app(engine: Engine, lifespan: Callable[[Starlette], Any] | None = None) -> Starlette:
    async def track(request: Request) -> Response:
        body = await request.json()
        profile, name = body["userId"], body["event"]
        properties = body.get("properties") or {}
        if name in WAITS:
            await engine.enter(profile, properties["plan"], properties["email"], WAITS[name])
        elif name == "followed_up":
            await engine.follow_up(profile)
        else:
            return Response(b'{"error":"unknown event"}', 400, media_type="application/json")
        return Response(ACCEPTED, 202, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', 200, media_type="application/json")

    routes = [Route("/v1/track", track, methods=["POST"]), Route("/healthz", healthz)]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(application: Starlette, port: int) -> None:
    import uvicorn

    # Keep-alive as long as the load generator may leave a connection idle waiting on a slow
    # peer (uvicorn's default closes it after 5s).
    uvicorn.run(
        application,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="uvloop",
        timeout_keep_alive=300,
    )


Handler = Callable[..., Awaitable[None]]
