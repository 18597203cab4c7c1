"""Provider feedback with a bus: ``serve --bus`` takes the providers' calls, JetStream
carries them, and a ``journeyman worker`` applies them and enforces them at its next send.

A signed hard bounce from the email service suppresses the address and Twilio's signed
inbound STOP opts the number out of SMS; the worker then skips both sends of the next
greeting, with the reason in the trace. The status callback of an SMS that the worker sent
finds its message. Real PostgreSQL, NATS, SMTP and an HTTP server standing in for Twilio.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.cluster import serve_with_worker
from tests.conftest import write_workspace
from tests.integration.test_provider_feedback import (
    ESP_SECRET,
    PHONE,
    TWILIO_ANSWER,
    TWILIO_TOKEN,
    channels,
    esp_post,
    history,
    signed,
    twilio_post,
    twilio_signature,
)
from tests.integration.test_provider_feedback import WORKSPACE as FEEDBACK_WORKSPACE
from tests.servers import HttpServer, Reply, SmtpServer
from tests.stores import Backend
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

# The workspace of the provider tests, and a second greeting that sends both again.
WORKSPACE = (
    FEEDBACK_WORKSPACE
    + """---
kind: event
name: greeted
---
kind: journey
name: again
entry: {event: greeted}
steps:
  - id: greet_again
    send: hello_email
  - id: text_again
    send: hello_sms
"""
)


def test_a_worker_applies_bounces_and_stops_that_serve_took_and_skips_the_next_sends(
    tmp_path: Path, store_url: str, backend: Backend
) -> None:
    env = {"ESP_SECRET": ESP_SECRET, "TWILIO_TOKEN": TWILIO_TOKEN}
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        twilio = stack.enter_context(HttpServer([Reply(201, TWILIO_ANSWER)]))
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, channels(smtp.port, twilio.url))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2, env)
        client = stack.enter_context(api.client())

        def names() -> list[str]:
            return [e.name for e in history(backend, api)]

        traits = {"email": "ada@example.com", "phone": PHONE}
        assert client.post("/v1/identify", json={"userId": "ada", "traits": traits}).is_success
        assert client.post("/v1/track", json={"userId": "ada", "event": "signed_up"}).is_success
        wait_until(lambda: smtp.received and twilio.requests, "the email and the SMS to go out")
        wait_until(lambda: names().count("message_sent") == 2, "both sends recorded")
        key = str(smtp.received[0].message["X-Journeyman-Key"])
        form = dict(parse_qsl(twilio.requests[0].body.decode()))

        # The status callback the worker put on its SMS reaches serve and finds the message.
        callback = form["StatusCallback"]
        assert callback.startswith(f"{api.url}/hooks/twilio/sms/status/")
        status = {"MessageSid": "SM0123", "MessageStatus": "delivered", "To": PHONE}
        answer = twilio_post(callback, status, twilio_signature(callback, status))
        assert answer.status_code == 204, answer.text

        report = [{"type": "bounce", "message": key, "bounce": "hard", "reason": "550 5.1.1"}]
        body = json.dumps(report).encode()
        answer = esp_post(api, body, signed(body))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 1, "duplicate": 0, "skipped": 0}

        inbound = f"{api.url}/hooks/twilio/sms/inbound"
        stop = {"From": PHONE, "To": "+15005550006", "Body": "STOP", "MessageSid": "SMin1"}
        assert twilio_post(inbound, stop, twilio_signature(inbound, stop)).status_code == 200
        wait_until(
            lambda: {"message_bounced", "unsubscribed"} <= set(names()),
            "the worker to apply the bounce and the STOP",
        )
        [delivered] = [
            e
            for e in history(backend, api)
            if e.name == "message_sent" and e.properties.get("delivered")
        ]
        assert delivered.properties["step"] == "text"

        assert client.post("/v1/track", json={"userId": "ada", "event": "greeted"}).is_success

        def skipped() -> dict[str, str] | None:
            found = client.get("/v1/profiles/ada").json()["instances"]
            [again] = [i for i in found if i["journey"] == "again"] or [None]
            if again is None or again["status"] != "ended":
                return None
            trace: list[dict[str, Any]] = again["trace"]
            return {r["step"]: r["detail"] for r in trace if r["outcome"] == "skipped"}

        details = wait_until(skipped, "the second greeting to end")
        assert details["greet_again"].startswith("ada@example.com is suppressed (hard bounce, ")
        assert details["text_again"] == "no consent for sms"
        assert len(smtp.received) == 1
        assert len(twilio.requests) == 1
