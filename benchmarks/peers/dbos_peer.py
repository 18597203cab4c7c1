"""The journey on DBOS Transact: one workflow per profile and journey.

``python dbos_peer.py --port P --db URL --sink FILE`` serves the shared HTTP front
(:mod:`front`) with DBOS behind it. ``signed_up`` starts the workflow, with the profile's
id as its workflow id (so a retried event starts nothing twice); ``followed_up`` is a
``DBOS.send_async`` to it. The workflow sends the welcome in a step, waits for the
follow-up with ``DBOS.recv_async`` and a timeout, branches on the plan trait the profile
signed up with, sends the offer in a step, and ends.

Settings: the system database is SQLite (``sqlite:///FILE``, switched to WAL before
launch; the WAL mode persists in the file; DBOS's own ``busy_timeout=30000`` and
IMMEDIATE transactions; synchronous left at FULL, SQLite's default) or PostgreSQL
(``postgresql://...``, LISTEN/NOTIFY on, DBOS's default). Everything else is DBOS's
default: the system database pool, the notification polling interval of 1s on SQLite.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from dbos import DBOS, DBOSConfig, SetWorkflowID
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).parent))

import front

sink: front.Sink


@DBOS.step()
async def send(profile: str, step: str, template: str, to: str) -> None:
    await sink.send(profile, step, template, to)


@DBOS.workflow()
async def welcome(profile: str, plan: str, email: str, wait: float) -> str:
    await send(profile, "welcome", "welcome_email", email)
    await DBOS.recv_async("followed_up", timeout_seconds=wait)
    if plan == "pro":
        await send(profile, "pro", "pro_offer", email)
    else:
        await send(profile, "basic", "basic_offer", email)
    return "done"


def workflow_id(profile: str) -> str:
    return f"welcome-{profile}"


class Engine:
    async def enter(self, profile: str, plan: str, email: str, wait: float) -> None:
        with SetWorkflowID(workflow_id(profile)):
            await DBOS.start_workflow_async(welcome, profile, plan, email, wait)

    async def follow_up(self, profile: str) -> None:
        await DBOS.send_async(workflow_id(profile), "followed_up", topic="followed_up")


def configure(url: str) -> DBOSConfig:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    return {"name": "journey_bench", "system_database_url": url, "log_level": "WARNING"}


def main() -> None:
    global sink
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--sink", required=True)
    args = parser.parse_args()
    sink = front.Sink(Path(args.sink))
    DBOS(config=configure(args.db))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        DBOS.launch()
        yield
        DBOS.destroy()

    front.serve(front.app(Engine(), lifespan), args.port)


if __name__ == "__main__":
    main()
