"""What customers do with a send step's messages, counted on the step: in the trace, in
``GET /v1/journeys/{name}`` and on the console's journey page, on every backend."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from journeyman.api import Keys, create_app
from journeyman.channels.file import FileChannel
from journeyman.domain.reactions import reaction_event
from journeyman.domain.state import SendMessage
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace
from tests.waiting import eventually

KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}

JOURNEY = """
kind: journey
name: hello
entry: {event: signed_up}
steps:
  - id: greet
    send: hello_email
  - id: pause
    wait: 1d
"""


def test_reactions_are_counted_once_per_message_with_rates_of_the_sent(
    tmp_path: Path, store_url: str
) -> None:
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE, JOURNEY)).workspace
    assert workspace is not None

    async def main() -> None:
        channels = {"email": FileChannel("email", tmp_path / "mail.jsonl")}
        runtime = Runtime(workspace, open_store(store_url), channels, env={})
        await runtime.start()
        try:
            app = create_app(runtime, KEYS)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://j"
            ) as client:
                await _scenario(client, runtime)
        finally:
            await runtime.stop()

    asyncio.run(main())


async def _scenario(client: httpx.AsyncClient, runtime: Runtime) -> None:
    for user in ("ada", "bob", "cy", "dee"):
        identify = {"userId": user, "traits": {"email": f"{user}@example.com"}}
        assert (await client.post("/v1/identify", json=identify, headers=WRITE)).is_success
        track = {"userId": user, "event": "signed_up"}
        assert (await client.post("/v1/track", json=track, headers=WRITE)).is_success

    async def sent() -> list[Any]:
        rows = await runtime.reads.messages(journey="hello")
        return rows if len(rows) == 4 and all(r.status == "sent" for r in rows) else []

    rows = await eventually(sent, "the four welcome emails to be sent")

    async def delivered() -> bool:  # the dispatcher records each message_sent
        counts = await runtime.reads.step_counts("hello")
        return counts.get("greet", {}).get("unique_delivered") == 4

    await eventually(delivered, "message_sent of the four emails")
    messages = {r.profile_id: await _message(runtime, r.key, r.instance_id) for r in rows}
    now = runtime.processor.now()
    at = [now + timedelta(seconds=i) for i in range(10)]
    reactions = [
        # ada opens twice and clicks twice: one opened message, one clicking message
        reaction_event("message_opened", messages["ada"], at[1], machine=False),
        reaction_event("message_opened", messages["ada"], at[2], machine=False),
        reaction_event("message_clicked", messages["ada"], at[3], url="https://shop.test/a"),
        reaction_event("message_clicked", messages["ada"], at[4], url="https://shop.test/b"),
        # bob's mail provider fetched the pixel: not a person
        reaction_event("message_opened", messages["bob"], at[5], machine=True),
        reaction_event(
            "message_bounced", messages["dee"], at[6], bounce="hard", address="dee@example.com"
        ),
        reaction_event("unsubscribed", messages["cy"], at[7], source="one-click"),
    ]
    assert await runtime.accept(reactions) == ["accepted"] * len(reactions)

    answer = await client.get("/v1/journeys/hello", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    (greet,) = [s for s in answer.json()["steps"] if s["id"] == "greet"]
    engagement = greet["engagement"]
    assert {k: v for k, v in engagement.items() if k != "rates"} == {
        "sent": 4,
        "delivered": 4,
        "opened": 1,
        "machine_opened": 1,
        "clicked": 1,
        "bounced": 1,
        "complained": 0,
        "unsubscribed": 1,
        "clicks": 2,
    }
    assert engagement["rates"]["delivered"] == 1.0
    assert engagement["rates"]["opened"] == 0.25
    assert greet["counts"]["clicked"] == 2

    profile = (await client.get("/v1/profiles/ada", headers=ADMIN)).json()
    (instance,) = profile["instances"]
    lines = [(r["step"], r["outcome"], r["detail"]) for r in instance["trace"]]
    assert ("greet", "clicked", "https://shop.test/b") in lines
    assert ("greet", "opened", "") in lines

    page = await _console_page(client, "/journeys/hello?step=greet")
    assert "What customers did" in page
    assert "of 4 sent" in page
    assert 'data-engagement="opened"><th scope="row">opened</th><td>1</td><td>25.0%' in page
    shown = await client.get("/profiles/ada")
    assert shown.status_code == 200
    assert 'data-reaction="opened"' in shown.text
    assert 'data-reaction="clicked"' in shown.text
    assert "https://shop.test/a" in shown.text


async def _message(runtime: Runtime, key: str, instance: str) -> SendMessage:
    found = await runtime.store.instance(instance)
    assert found is not None
    (row,) = [r for r in await runtime.reads.messages(profile=found.profile_id) if r.key == key]
    return SendMessage(
        key=row.key,
        instance_id=row.instance_id,
        journey=row.journey,
        step=row.step,
        profile_id=row.profile_id,
        channel=row.channel,
        template="hello_email",
        to=None,
        content={},
        at=row.created_at,
        version=found.version,
    )


async def _console_page(client: httpx.AsyncClient, path: str) -> str:
    form = (await client.get("/login")).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    fields = {"csrf": csrf.group(1), "user": "", "key": "a-key", "next": path}
    answer = await client.post("/login", data=fields)
    assert answer.status_code == 303, answer.text
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return page.text
