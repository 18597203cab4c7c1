"""Delivery by ``journeyman serve`` end to end: retries, permanent failures, ``on_error``.

The server runs as a child process (see :class:`tests.servers.Journeyman`) on a database
of each backend another process can open, and delivers to a real HTTP server on 127.0.0.1
that answers what each test scripts. Retries back off from ``JOURNEYMAN_RETRY_BASE``
seconds, a fraction of a second here.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from journeyman.channels.webhook import verify_signature
from tests.conftest import write_workspace
from tests.servers import WRITE_KEY, HttpServer, Journeyman, Reply
from tests.stores import Backend
from tests.waiting import wait_until

# A server in another process needs a database that outlives it (not SQLite in memory).
pytestmark = pytest.mark.durable

SECRET = "webhook-secret-for-tests"
TOKEN = "twilio-token-for-tests"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}

WORKSPACE = """
kind: event
name: hooked
---
kind: event
name: texted
---
kind: template
name: hook_note
channel: webhook
body: "Hello {{ profile.firstName | default: 'there' }}"
---
kind: template
name: text_note
channel: sms
body: "Hi {{ profile.firstName }}, your code is ready"
---
kind: journey
name: notify
entry: {event: hooked}
steps:
  - id: note
    send: hook_note
    on_error: undelivered
  - id: delivered
    end: delivered
  - id: undelivered
    end: undelivered
---
kind: journey
name: text
entry: {event: texted}
steps:
  - id: note
    send: text_note
  - id: done
    end: texted
"""


def channels(url: str) -> str:
    return f"""
kind: channel
name: webhook
type: webhook
url: "{url}/hooks"
secret: "${{WEBHOOK_SECRET}}"
timeout: 5
allow: [127.0.0.1]             # the test server listens on loopback
---
kind: channel
name: sms
type: twilio
account_sid: AC123
auth_token: "${{TWILIO_TOKEN}}"
from: "+15550001"
base_url: "{url}"
allow: [127.0.0.1]
"""


Start = Callable[..., Journeyman]


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


@pytest.fixture
def serve(tmp_path: Path, store_url: str, http_server: HttpServer) -> Iterator[Start]:
    """Starts the server, delivering to ``http_server``; keywords add to its environment."""
    workspace = write_workspace(tmp_path / "ws", WORKSPACE, channels(http_server.url))
    base = {"WEBHOOK_SECRET": SECRET, "TWILIO_TOKEN": TOKEN, "JOURNEYMAN_RETRY_BASE": "0.2"}
    with contextlib.ExitStack() as stack:

        def start(**env: str) -> Journeyman:
            server = Journeyman(workspace, store_url, tmp_path, base | env)
            return stack.enter_context(server).start()

        yield start


def trigger(server: Journeyman, event: str, traits: dict[str, str] | None = None) -> None:
    with server.client(WRITE_KEY) as client:
        if traits:
            answer = client.post("/v1/identify", json={"userId": "u1", "traits": traits})
            assert answer.status_code == 202, answer.text
        answer = client.post("/v1/track", json={"userId": "u1", "event": event})
        assert answer.status_code == 202, answer.text


def ended(server: Journeyman, journey: str) -> dict[str, Any] | None:
    with server.client() as client:
        instances = client.get("/v1/profiles/u1").json()["instances"]
    (found,) = [i for i in instances if i["journey"] == journey]
    return dict(found) if found["status"] == "ended" else None


def the_message(server: Journeyman) -> dict[str, Any]:
    with server.client() as client:
        [message] = client.get("/v1/messages", params={"profile": "u1"}).json()["messages"]
    return dict(message)


def test_a_webhook_answered_500_twice_is_delivered_once_signed_with_one_idempotency_key(
    serve: Start, http_server: HttpServer
) -> None:
    http_server.reply(Reply(500, b"busy"), Reply(500, b"busy"), Reply(200))
    server = serve()

    trigger(server, "hooked", {"firstName": "Ada"})

    done = wait_until(lambda: ended(server, "notify"), "the delivery to go through")
    assert done["end_state"] == "delivered"
    message = the_message(server)
    assert (message["status"], message["attempts"]) == ("sent", 3)
    assert message["detail"].startswith("200")
    requests = http_server.requests
    assert len(requests) == 3
    for request in requests:
        assert (request.method, request.path) == ("POST", "/hooks")
        assert request.headers["idempotency-key"] == message["key"]
        timestamp = request.headers["x-journeyman-timestamp"]
        signature = request.headers["x-journeyman-signature"]
        assert verify_signature(SECRET, request.body, timestamp, signature)
        assert not verify_signature("another secret", request.body, timestamp, signature)
        assert request.body == requests[0].body
    body = httpx.Response(200, content=requests[0].body).json()
    assert (body["key"], body["content"]) == (message["key"], {"body": "Hello Ada"})


def test_a_webhook_refused_for_good_is_logged_failed_and_takes_the_on_error_path(
    serve: Start, http_server: HttpServer
) -> None:
    http_server.reply(Reply(400, b'{"error": "unknown receiver"}'))
    server = serve()

    trigger(server, "hooked")

    done = wait_until(lambda: ended(server, "notify"), "the failure to be handled")
    assert done["end_state"] == "undelivered"
    assert "undelivered" in [record["step"] for record in done["trace"]]
    assert "delivered" not in [record["step"] for record in done["trace"]]
    message = the_message(server)
    assert (message["status"], message["attempts"]) == ("failed", 1)
    assert "400" in message["detail"]
    assert "unknown receiver" in message["detail"]
    assert len(http_server.requests) == 1  # a permanent failure is not retried


def test_a_webhook_that_keeps_failing_gives_up_after_its_attempts_and_takes_on_error(
    serve: Start, http_server: HttpServer
) -> None:
    http_server.reply(Reply(503, b"down for maintenance"))
    server = serve(JOURNEYMAN_RETRY_ATTEMPTS="3")

    trigger(server, "hooked")

    done = wait_until(lambda: ended(server, "notify"), "the retries to run out")
    assert done["end_state"] == "undelivered"
    message = the_message(server)
    assert message["status"] == "failed"
    assert message["detail"].startswith("gave up after 3 attempts: 503")
    assert len(http_server.requests) == 3
    assert len({r.headers["idempotency-key"] for r in http_server.requests}) == 1


def test_an_sms_goes_out_once_in_the_twilio_shape_with_its_idempotency_token(
    serve: Start, http_server: HttpServer
) -> None:
    http_server.reply(Reply(201, b'{"sid": "SM1", "status": "queued"}'))
    server = serve()

    trigger(server, "texted", {"firstName": "Ada", "phone": "+15005550006"})

    wait_until(lambda: ended(server, "text"), "the SMS journey to end")
    message = wait_until(
        lambda: (m := the_message(server))["status"] == "sent" and m, "the SMS to be sent"
    )
    assert message["detail"] == "201 Created: queued"
    [request] = http_server.requests
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["i-twilio-idempotency-token"] == message["key"]
    credentials = base64.b64encode(f"AC123:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    form = parse_qs(request.body.decode())
    # Twilio reports the SMS's fate to a signed URL of ours that names it.
    [callback] = form.pop("StatusCallback")
    assert callback.startswith(f"{server.url}/hooks/twilio/sms/status/")
    assert message["key"] not in callback
    assert form == {
        "To": ["+15005550006"],
        "From": ["+15550001"],
        "Body": ["Hi Ada, your code is ready"],
    }


def test_sigterm_lets_a_delivery_in_flight_finish_and_records_it(
    serve: Start, http_server: HttpServer, backend: Backend
) -> None:
    http_server.reply(Reply(200, delay=1.0))
    server = serve()
    trigger(server, "hooked")
    wait_until(lambda: http_server.requests, "the webhook call to start")

    assert server.stop() == 0, server.output
    assert "journeyman stopped" in server.output

    # Recorded as sent, and the instance went on: nothing is left to send again.
    assert backend.rows is not None
    assert backend.rows(server.db, "SELECT status, attempts FROM outbox") == [("sent", 1)]
    assert backend.rows(server.db, "SELECT journey, status FROM instances") == [("notify", "ended")]
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [("JOURNEYMAN_RETRY_BASE", "soon"), ("JOURNEYMAN_RETRY_ATTEMPTS", "0")],
)
def test_serve_refuses_a_retry_setting_it_cannot_use(
    tmp_path: Path, store_url: str, http_server: HttpServer, variable: str, value: str
) -> None:
    workspace = write_workspace(tmp_path / "ws", WORKSPACE, channels(http_server.url))
    env = {"WEBHOOK_SECRET": SECRET, "TWILIO_TOKEN": TOKEN, variable: value}
    server = Journeyman(workspace, store_url, tmp_path, env)

    done = subprocess.run(server.command(), env=server.env, capture_output=True, timeout=30)

    assert done.returncode == 1
    assert f"{variable} must be" in done.stderr.decode()
    assert repr(value) in done.stderr.decode()
