"""Providers report back over HTTP: an email service's signed webhook, Twilio's status
callback and inbound SMS (STOP, START, HELP).

A real ``journeyman serve`` sends a welcome email to a real SMTP server and an SMS to a
local HTTP server standing in for Twilio's API; the test then posts what the providers
would, over real HTTP, signed (or forged) with signatures it computes itself from the
providers' documented rules. Every event lands in the profile's history in the database.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from journeyman.api import Keys, create_app
from journeyman.domain.state import Event
from journeyman.runtime.service import Runtime, build_channels
from journeyman.storage import open_store
from journeyman.storage.base import StorageUnavailable
from journeyman.storage.codec import decode_event
from journeyman.workspace import load_workspace
from tests.conftest import START, write_workspace
from tests.servers import HttpServer, Journeyman, Reply, SmtpServer
from tests.stores import Backend
from tests.waiting import wait_until

ESP_SECRET = "esp-webhook-secret"
TWILIO_TOKEN = "twilio-auth-token"
PHONE = "+15550100"
HELP = "Example Co: reply STOP to stop. Help: example.com/help"

WORKSPACE = """
kind: event
name: signed_up
---
kind: template
name: hello_email
channel: email
subject: Hello
text: Welcome
---
kind: template
name: hello_sms
channel: sms
body: Hello by SMS
---
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: greet
    send: hello_email
  - id: text
    send: hello_sms
  - id: pause
    wait: 1d
"""


def channels(smtp_port: int, twilio_url: str) -> str:
    return f"""
kind: channel
name: email
type: smtp
host: 127.0.0.1
port: {smtp_port}
security: none
from: "Example <hello@example.com>"
feedback_secret: "${{ESP_SECRET}}"
---
kind: channel
name: sms
type: twilio
account_sid: AC0123456789abcdef0123456789abcdef
auth_token: "${{TWILIO_TOKEN}}"
from: "+15005550006"
base_url: {twilio_url}
allow: [127.0.0.1]
help: "{HELP}"
"""


TWILIO_ANSWER = b'{"sid": "SM0123", "status": "queued"}'

pytestmark = pytest.mark.durable  # read the history beside the server


@pytest.fixture
def providers() -> Iterator[tuple[SmtpServer, HttpServer]]:
    with SmtpServer() as smtp, HttpServer([Reply(201, TWILIO_ANSWER)]) as twilio:
        yield smtp, twilio


@pytest.fixture
def journeyman(
    tmp_path: Path, store_url: str, providers: tuple[SmtpServer, HttpServer]
) -> Iterator[Journeyman]:
    smtp, twilio = providers
    workspace = write_workspace(tmp_path / "ws", WORKSPACE, channels(smtp.port, twilio.url))
    env = {"ESP_SECRET": ESP_SECRET, "TWILIO_TOKEN": TWILIO_TOKEN}
    with Journeyman(workspace, store_url, tmp_path, env) as server:
        yield server.start()


@pytest.fixture
def sent(
    journeyman: Journeyman, providers: tuple[SmtpServer, HttpServer]
) -> tuple[str, dict[str, str]]:
    """Ada signs up; once her email and SMS are out: the email's key and the SMS form."""
    smtp, twilio = providers
    with journeyman.client() as api:
        traits = {"email": "ada@example.com", "phone": PHONE}
        assert api.post("/v1/identify", json={"userId": "ada", "traits": traits}).is_success
        assert api.post("/v1/track", json={"userId": "ada", "event": "signed_up"}).is_success
    wait_until(lambda: smtp.received and twilio.requests, "the email and the SMS to go out")
    key = str(smtp.received[0].message["X-Journeyman-Key"])
    return key, dict(parse_qsl(twilio.requests[0].body.decode()))


def history(backend: Backend, journeyman: Journeyman, profile: str = "ada") -> list[Any]:
    assert backend.rows is not None
    query = f"SELECT body FROM events WHERE profile_id = '{profile}' ORDER BY seq"
    return [decode_event(bytes(body)) for (body,) in backend.rows(journeyman.db, query)]


def names(backend: Backend, journeyman: Journeyman, profile: str = "ada") -> list[str]:
    return [e.name for e in history(backend, journeyman, profile)]


def when_sent(backend: Backend, journeyman: Journeyman) -> list[str]:
    """The history once both messages are recorded as sent."""
    wait_until(lambda: names(backend, journeyman).count("message_sent") == 2, "both sends recorded")
    return names(backend, journeyman)


# ---------------------------------------------------------------- email service


def esp_post(server: Journeyman, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Journeyman-Signature"] = signature
    with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as client:
        return client.post("/hooks/email/email", content=body, headers=headers)


def signed(body: bytes, secret: str = ESP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_signed_bounce_report_records_a_hard_bounce_once(
    journeyman: Journeyman, backend: Backend, sent: tuple[str, dict[str, str]]
) -> None:
    key, _ = sent
    before = when_sent(backend, journeyman)
    report = [
        {
            "type": "bounce",
            "message": key,
            "bounce": "hard",
            "reason": "550 5.1.1 mailbox unknown",
            "timestamp": "2026-12-05T10:00:00Z",
        },
        {"type": "open", "message": key, "user_agent": "Mail/1.0", "id": "evt-2"},
        {"type": "delivered", "message": key, "timestamp": 1796464800},
        {"type": "complaint", "message": "no-such-message"},
    ]
    body = json.dumps(report).encode()
    answer = esp_post(journeyman, body, signed(body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 3, "duplicate": 0, "skipped": 1}

    events = history(backend, journeyman)[len(before) :]
    bounce, opened, delivered = events
    assert delivered.name == "message_sent"
    assert delivered.properties["delivered"] is True
    assert bounce.name == "message_bounced"
    assert bounce.properties["bounce"] == "hard"
    assert bounce.properties["address"] == "ada@example.com"
    assert bounce.properties["reason"] == "550 5.1.1 mailbox unknown"
    assert bounce.properties["message"] == key
    assert bounce.properties["journey"] == "welcome"
    assert bounce.properties["step"] == "greet"
    assert opened.name == "message_opened"
    assert opened.properties["user_agent"] == "Mail/1.0"

    again = esp_post(journeyman, body, signed(body))  # the provider retries its call
    assert again.json() == {"accepted": 0, "duplicate": 3, "skipped": 1}
    assert len(history(backend, journeyman)) == len(before) + 3


def test_an_unsubscribe_the_email_service_reports_stops_the_messages_channel(
    journeyman: Journeyman, backend: Backend, sent: tuple[str, dict[str, str]]
) -> None:
    key, _ = sent
    before = when_sent(backend, journeyman)
    body = json.dumps([{"type": "unsubscribe", "message": key, "id": "u-1"}]).encode()
    answer = esp_post(journeyman, body, signed(body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 1, "duplicate": 0, "skipped": 0}
    [event] = history(backend, journeyman)[len(before) :]
    assert event.name == "unsubscribed"
    # the welcome email has no topic: its channel, as the one-click link would
    assert event.properties["channel"] == "email"
    assert event.properties["source"] == "provider"
    assert event.properties["step"] == "greet"
    with journeyman.client() as api:
        consent = api.get("/v1/profiles/ada").json()["consent"]
    assert consent["channels"] == {"email": False}


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=" + "0" * 64, "sha1=abc", signed(b"[]"), signed(b"x", "wrong-secret")],
    ids=["missing", "empty", "zeros", "other-scheme", "other-body", "other-secret"],
)
def test_a_forged_report_is_refused_and_changes_nothing(
    journeyman: Journeyman,
    backend: Backend,
    sent: tuple[str, dict[str, str]],
    signature: str | None,
) -> None:
    key, _ = sent
    before = when_sent(backend, journeyman)
    body = json.dumps([{"type": "complaint", "message": key}]).encode()
    if signature == signed(b"x", "wrong-secret"):
        signature = signed(body, "wrong-secret")
    answer = esp_post(journeyman, body, signature)
    assert answer.status_code == 401
    assert answer.json()["error"]["field"] == "X-Journeyman-Signature"
    assert names(backend, journeyman) == before


def test_a_signed_report_of_the_wrong_shape_names_the_field(
    journeyman: Journeyman, backend: Backend, sent: tuple[str, dict[str, str]]
) -> None:
    key, _ = sent
    before = when_sent(backend, journeyman)
    body = json.dumps([{"type": "bounce", "message": key, "bounce": "sometimes"}]).encode()
    answer = esp_post(journeyman, body, signed(body))
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "[0].bounce"
    assert names(backend, journeyman) == before


# ---------------------------------------------------------------- Twilio


def twilio_signature(url: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    """Twilio's documented rule: the full URL, then each POST parameter's name and value in
    the order of their names; HMAC-SHA1 under the auth token; base64."""
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_post(url: str, params: dict[str, str], signature: str) -> httpx.Response:
    with httpx.Client(timeout=20, trust_env=False) as client:
        return client.post(url, data=params, headers={"X-Twilio-Signature": signature})


def test_the_sms_carries_a_status_callback_and_its_signed_report_is_recorded(
    journeyman: Journeyman, backend: Backend, sent: tuple[str, dict[str, str]]
) -> None:
    _, form = sent
    callback = form["StatusCallback"]
    assert callback.startswith(f"{journeyman.url}/hooks/twilio/sms/status/")
    before = when_sent(backend, journeyman)
    params = {
        "MessageSid": "SM0123",
        "MessageStatus": "undelivered",
        "ErrorCode": "30005",
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "To": PHONE,
    }
    forged = twilio_post(callback, params, twilio_signature(callback, params, "not-the-token"))
    assert forged.status_code == 403
    altered = twilio_post(
        callback, {**params, "ErrorCode": "1"}, twilio_signature(callback, params)
    )
    assert altered.status_code == 403
    assert names(backend, journeyman) == before

    answer = twilio_post(callback, params, twilio_signature(callback, params))
    assert answer.status_code == 204, answer.text
    events = history(backend, journeyman)[len(before) :]
    assert [e.name for e in events] == ["message_bounced", "message_failed"]
    assert events[0].properties["address"] == PHONE
    assert events[0].properties["bounce"] == "hard"
    assert events[1].properties["step"] == "text"
    assert "30005" in events[1].properties["reason"]

    # A token for another message, or altered, finds nothing, however well signed.
    other = callback[: -len(urlsplit(callback).path.rsplit("/", 1)[1])] + "AAAA"
    assert twilio_post(other, params, twilio_signature(other, params)).status_code == 404


@pytest.mark.parametrize(
    ("word", "expected"),
    [("STOP", "unsubscribed"), (" stopall ", "unsubscribed"), ("Quit", "unsubscribed")],
)
def test_an_inbound_stop_opts_the_number_out_of_sms(
    journeyman: Journeyman,
    backend: Backend,
    sent: tuple[str, dict[str, str]],
    word: str,
    expected: str,
) -> None:
    before = when_sent(backend, journeyman)
    url = f"{journeyman.url}/hooks/twilio/sms/inbound"
    params = {"From": PHONE, "To": "+15005550006", "Body": word, "MessageSid": "SMin1"}
    answer = twilio_post(url, params, twilio_signature(url, params))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert "<Message>" not in answer.text
    [event] = history(backend, journeyman)[len(before) :]
    assert event.name == expected
    assert event.properties == {"channel": "sms", "source": "sms"}

    # START opts back in; Twilio sending the same message again changes nothing more.
    back = {**params, "Body": "START", "MessageSid": "SMin2"}
    assert twilio_post(url, back, twilio_signature(url, back)).status_code == 200
    assert twilio_post(url, back, twilio_signature(url, back)).status_code == 200
    assert names(backend, journeyman)[len(before) :] == [expected, "resubscribed"]


def test_help_answers_with_the_channels_text_and_strangers_change_nothing(
    journeyman: Journeyman, backend: Backend, sent: tuple[str, dict[str, str]]
) -> None:
    before = when_sent(backend, journeyman)
    url = f"{journeyman.url}/hooks/twilio/sms/inbound"
    ask = {"From": PHONE, "Body": "help", "MessageSid": "SMh"}
    answer = twilio_post(url, ask, twilio_signature(url, ask))
    assert answer.status_code == 200
    assert f"<Response><Message>{HELP}</Message></Response>" in answer.text

    stranger = {"From": "+15559999", "Body": "STOP", "MessageSid": "SMs"}
    answer = twilio_post(url, stranger, twilio_signature(url, stranger))
    assert answer.status_code == 200
    assert "<Message>" not in answer.text
    forged = {"From": PHONE, "Body": "STOP", "MessageSid": "SMf"}
    assert twilio_post(url, forged, "AAAA").status_code == 403
    assert twilio_post(url, forged, "").status_code == 403
    assert names(backend, journeyman) == before
    assert names(backend, journeyman, "+15559999") == []


@pytest.mark.parametrize(
    ("failure", "status", "rule"),
    [
        (StorageUnavailable("the database is away"), 503, "unavailable"),
        (RuntimeError("a fault in journeyman"), 500, "internal"),
    ],
)
def test_only_an_unavailable_store_asks_the_provider_to_try_again(
    tmp_path: Path, failure: Exception, status: int, rule: str
) -> None:
    """A provider retries a 503; a fault in journeyman must show as a 500, not hide as one."""
    folder = write_workspace(tmp_path / "ws", WORKSPACE, channels(9, "http://127.0.0.1:9"))
    workspace = load_workspace(folder).workspace
    assert workspace is not None
    env = {"ESP_SECRET": ESP_SECRET, "TWILIO_TOKEN": TWILIO_TOKEN}

    async def main() -> None:
        store = open_store("memory://")
        made = build_channels(workspace, env, root=folder, fallback_dir=tmp_path)
        runtime = Runtime(workspace, store, made, env=env, root=folder)
        await runtime.start()
        try:
            traits = {"email": "u1@example.com"}
            await runtime.accept(
                [
                    Event(
                        name="identify",
                        type="identify",
                        profile_id="u1",
                        timestamp=START,
                        properties=traits,
                    ),
                    Event(name="signed_up", profile_id="u1", timestamp=START),
                ]
            )
            (row,) = [r for r in await runtime.reads.messages(profile="u1") if r.step == "greet"]

            async def failing(events: list[Event]) -> list[str]:
                raise failure

            runtime.accept = failing  # type: ignore[method-assign]
            body = json.dumps([{"type": "open", "message": row.key}]).encode()
            app = create_app(runtime, Keys(write="w", admin="a"))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                headers = {"X-Journeyman-Signature": signed(body)}
                answer = await client.post("/hooks/email/email", content=body, headers=headers)
            assert answer.status_code == status, answer.text
            assert answer.json()["error"]["rule"] == rule
        finally:
            await runtime.stop()

    asyncio.run(main())
