"""Delivery channels and action calls, against real servers on 127.0.0.1.

Coroutines run with ``asyncio.run`` inside plain tests; the servers run in threads of
their own (see ``tests/servers.py``), as a provider would run in another process.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import msgspec
import pytest

import journeyman.channels
from journeyman.channels import (
    CaughtMail,
    Channel,
    ChannelConfigError,
    Delivery,
    FileChannel,
    MailCatcher,
    RateLimiter,
    SmtpChannel,
    TwilioChannel,
    WebhookChannel,
    channel_from_config,
    make_call,
    verify_signature,
)
from journeyman.channels.base import http_client
from journeyman.channels.smtp import message_id
from journeyman.domain.actions import Allow
from journeyman.domain.state import CallAction, SendMessage
from tests.servers import HttpServer, Reply, SmtpServer, free_port

# The test servers listen on loopback, which HTTP channels and calls reach only when allowed.
LOOPBACK = Allow.parse(["127.0.0.1"])

T = TypeVar("T")

AT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
SECRET = "s3cret-for-tests"
SENDER = "Journeyman Tests <hello@example.com>"


def run(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


def deliver(channel: Channel, *messages: SendMessage) -> list[Delivery]:
    """Send each message in turn, then close the channel, all in one event loop."""

    async def scenario() -> list[Delivery]:
        try:
            return [await channel.send(message) for message in messages]
        finally:
            await channel.close()

    return run(scenario())


def email_message(**changes: Any) -> SendMessage:
    fields: dict[str, Any] = {
        "key": "inst-1:welcome:2",
        "instance_id": "inst-1",
        "journey": "welcome",
        "step": "welcome",
        "profile_id": "u1",
        "channel": "email",
        "template": "welcome_email",
        "to": "ada@example.com",
        "content": {
            "subject": "Hi Adele, thank you for signing up!",
            "text": "Dear Adele, thank you.",
            "html": "<p>Dear Adele, thank you.</p>",
        },
        "at": AT,
    }
    return SendMessage(**(fields | changes))


def sms_message(**changes: Any) -> SendMessage:
    defaults = {"channel": "sms", "template": "nudge_sms", "to": "+15005550006"}
    return email_message(**(defaults | {"content": {"body": "Your cart misses you"}} | changes))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


def smtp_channel(server: SmtpServer) -> SmtpChannel:
    return SmtpChannel("email", host="127.0.0.1", port=server.port, sender=SENDER, security="none")


def webhook_channel(server: HttpServer, timeout: float = 5.0, name: str = "webhook") -> Channel:
    config: dict[str, Any] = {"name": name, "type": "webhook", "url": f"{server.url}/hooks"}
    config |= {"secret": "${WEBHOOK_SECRET}", "timeout": timeout, "allow": ["127.0.0.1"]}
    return channel_from_config(config, {"WEBHOOK_SECRET": SECRET})


def twilio_channel(server: HttpServer) -> Channel:
    config: dict[str, Any] = {
        "name": "sms",
        "type": "twilio",
        "account_sid": "AC123",
        "from": "+15550001",
    }
    config |= {"auth_token": "${TWILIO_TOKEN}", "base_url": server.url, "allow": ["127.0.0.1"]}
    return channel_from_config(config, {"TWILIO_TOKEN": "tok-456"})


# ---------------------------------------------------------------- smtp


def test_an_email_arrives_with_its_subject_both_parts_and_a_message_id_from_its_key(
    smtp_server: SmtpServer,
) -> None:
    [delivery] = deliver(smtp_channel(smtp_server), email_message())

    assert delivery.status == "sent"
    assert "queued" in delivery.detail  # the server's answer, for the message log
    [mail] = smtp_server.received
    assert mail.sender == "hello@example.com"
    assert mail.recipients == ["ada@example.com"]
    message = mail.message
    assert message["Subject"] == "Hi Adele, thank you for signing up!"
    assert message["From"] == SENDER
    assert message["To"] == "ada@example.com"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert text.get_content().strip() == "Dear Adele, thank you."
    assert html is not None
    assert html.get_content().strip() == "<p>Dear Adele, thank you.</p>"
    assert message["Message-ID"] == message_id("inst-1:welcome:2", SENDER)
    assert message["Message-ID"].endswith("@example.com>")
    assert message["X-Journeyman-Key"] == "inst-1:welcome:2"
    assert delivery.provider_id == message["Message-ID"]


def test_every_retry_of_a_send_has_the_same_message_id_and_another_send_another(
    smtp_server: SmtpServer,
) -> None:
    first, again = email_message(), email_message()
    other = email_message(key="inst-1:welcome:7")

    deliver(smtp_channel(smtp_server), first, again, other)

    ids = [mail.message["Message-ID"] for mail in smtp_server.received]
    assert ids[0] == ids[1] != ids[2]


def test_a_text_only_email_is_one_plain_part_and_a_multiline_subject_one_line(
    smtp_server: SmtpServer,
) -> None:
    content = {"subject": "Your order\n  has shipped", "text": "On its way."}

    [delivery] = deliver(smtp_channel(smtp_server), email_message(content=content))

    assert delivery.status == "sent"
    message = smtp_server.received[0].message
    assert message.get_content_type() == "text/plain"
    assert message["Subject"] == "Your order has shipped"
    assert message.get_content().strip() == "On its way."


@pytest.mark.parametrize(
    ("stage", "reply", "status"),
    [
        ("data", "451 4.3.0 Mailbox temporarily unavailable", "retry"),
        ("data", "552 5.3.4 Message too big", "failed"),
        ("rcpt", "450 4.2.1 Try again later", "retry"),
        ("rcpt", "550 5.1.1 No such user", "failed"),
    ],
)
def test_smtp_4xx_replies_are_retried_and_5xx_replies_fail(
    smtp_server: SmtpServer, stage: str, reply: str, status: str
) -> None:
    setattr(smtp_server, f"{stage}_reply", reply)

    [delivery] = deliver(smtp_channel(smtp_server), email_message())

    assert delivery.status == status
    assert reply.split()[0] in delivery.detail
    assert smtp_server.received == []


def test_an_unreachable_smtp_server_means_retry() -> None:
    channel = SmtpChannel("email", host="127.0.0.1", port=free_port(), sender=SENDER)

    [delivery] = deliver(channel, email_message())

    assert delivery.status == "retry"
    assert delivery.detail


def test_a_server_without_starttls_gets_no_email_in_clear_text(smtp_server: SmtpServer) -> None:
    channel = SmtpChannel("email", host="127.0.0.1", port=smtp_server.port, sender=SENDER)

    [delivery] = deliver(channel, email_message())

    assert delivery.status == "failed"
    assert "STARTTLS" in delivery.detail
    assert smtp_server.received == []


@pytest.mark.parametrize("to", [None, "", "ada@example.com\nBcc: eve@example.com"])
def test_an_email_without_a_usable_address_fails_and_nothing_is_sent(
    smtp_server: SmtpServer, to: str | None
) -> None:
    [delivery] = deliver(smtp_channel(smtp_server), email_message(to=to))

    assert delivery.status == "failed"
    assert smtp_server.received == []


# ---------------------------------------------------------------- catcher


def test_an_email_sent_to_the_catcher_is_kept_and_listed(tmp_path: Path) -> None:
    path = tmp_path / "mail.jsonl"

    async def scenario() -> Delivery:
        async with MailCatcher(path, port=0, clock=lambda: AT) as catcher:
            assert catcher.port != 0
            config = {"name": "email", "type": "catcher", "port": catcher.port, "from": SENDER}
            channel = channel_from_config(config, {})
            delivery = await channel.send(email_message())
            await channel.close()
            return delivery

    delivery = run(scenario())

    assert delivery.status == "sent"
    [mail] = MailCatcher.read(path)
    assert mail == CaughtMail(
        sender="hello@example.com",
        to=["ada@example.com"],
        subject="Hi Adele, thank you for signing up!",
        text="Dear Adele, thank you.\n",
        html="<p>Dear Adele, thank you.</p>\n",
        message_id=message_id("inst-1:welcome:2", SENDER),
        key="inst-1:welcome:2",
        received=AT,
    )
    assert json.loads(path.read_text())["from"] == "hello@example.com"


def test_the_catcher_lists_nothing_before_any_mail_and_skips_a_line_cut_short(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mail.jsonl"
    assert MailCatcher.read(path) == []
    mail = CaughtMail(
        sender="a@example.com",
        to=["b@example.com"],
        subject="Hello",
        text="hi",
        html=None,
        message_id="<1@example.com>",
        key=None,
        received=AT,
    )
    path.write_bytes(msgspec.json.encode(mail) + b'\n{"from": "a@exa')

    assert MailCatcher(path).mails() == [mail]


# ---------------------------------------------------------------- webhook


def test_a_webhook_posts_the_message_as_json_signed_for_the_receiver(
    http_server: HttpServer,
) -> None:
    push = email_message(channel="push", to="token-abc", content={"title": "Hi", "body": "Yo"})

    [delivery] = deliver(webhook_channel(http_server, name="push"), push)

    assert delivery.status == "sent"
    [request] = http_server.requests
    assert (request.method, request.path) == ("POST", "/hooks")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "inst-1:welcome:2"
    assert json.loads(request.body) == {
        "key": "inst-1:welcome:2",
        "journey": "welcome",
        "step": "welcome",
        "profile_id": "u1",
        "template": "welcome_email",
        "channel": "push",
        "to": "token-abc",
        "content": {"title": "Hi", "body": "Yo"},
        "at": "2026-01-05T09:30:00Z",
    }
    timestamp = request.headers["x-journeyman-timestamp"]
    signature = request.headers["x-journeyman-signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(SECRET, request.body, timestamp, signature)
    assert not verify_signature("another secret", request.body, timestamp, signature)
    assert not verify_signature(SECRET, request.body.replace(b"Yo", b"Yes"), timestamp, signature)
    later = str(int(timestamp) + 1)
    assert not verify_signature(SECRET, request.body, later, signature)


def test_a_receiver_refuses_a_signed_request_replayed_later(http_server: HttpServer) -> None:
    deliver(webhook_channel(http_server), email_message())
    [request] = http_server.requests
    timestamp = request.headers["x-journeyman-timestamp"]
    signature = request.headers["x-journeyman-signature"]

    fresh = verify_signature(SECRET, request.body, timestamp, signature, now=int(timestamp) + 60)
    stale = verify_signature(SECRET, request.body, timestamp, signature, now=int(timestamp) + 301)

    assert fresh
    assert not stale


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, "sent"),
        (204, "sent"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "failed"),
        (400, "failed"),
        (404, "failed"),
    ],
)
def test_webhook_answers_map_to_sent_retry_or_failed(
    http_server: HttpServer, code: int, status: str
) -> None:
    http_server.reply(Reply(code, b"provider says why"))

    [delivery] = deliver(webhook_channel(http_server), email_message())

    assert delivery.status == status
    assert str(code) in delivery.detail
    if code >= 300:
        assert "provider says why" in delivery.detail


def test_a_webhook_retried_after_a_500_carries_the_same_idempotency_key(
    http_server: HttpServer,
) -> None:
    http_server.reply(Reply(500), Reply(200))

    deliveries = deliver(webhook_channel(http_server), email_message(), email_message())

    assert [d.status for d in deliveries] == ["retry", "sent"]
    first, second = http_server.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body


def test_a_webhook_that_does_not_answer_in_time_is_retried(http_server: HttpServer) -> None:
    http_server.reply(Reply(hang=True))

    [delivery] = deliver(webhook_channel(http_server, timeout=0.05), email_message())

    assert delivery.status == "retry"
    assert "Timeout" in delivery.detail


def test_an_unreachable_webhook_is_retried() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    channel = WebhookChannel("webhook", url=url, secret=SECRET, allow=LOOPBACK)

    [delivery] = deliver(channel, email_message())

    assert delivery.status == "retry"


# ---------------------------------------------------------------- twilio


def test_an_sms_goes_out_in_the_twilio_messages_api_shape(http_server: HttpServer) -> None:
    http_server.reply(Reply(201, b'{"sid": "SM0123", "status": "queued"}'))

    [delivery] = deliver(twilio_channel(http_server), sms_message())

    assert delivery == Delivery("sent", "201 Created: queued", "SM0123")
    [request] = http_server.requests
    assert (request.method, request.path) == ("POST", "/2010-04-01/Accounts/AC123/Messages.json")
    assert parse_qs(request.body.decode()) == {
        "To": ["+15005550006"],
        "From": ["+15550001"],
        "Body": ["Your cart misses you"],
    }
    assert (
        request.headers["authorization"] == "Basic " + base64.b64encode(b"AC123:tok-456").decode()
    )
    assert request.headers["i-twilio-idempotency-token"] == "inst-1:welcome:2"


@pytest.mark.parametrize(
    ("reply", "status", "explained"),
    [
        (Reply(400, b'{"code": 21211, "message": "Invalid To number"}'), "failed", "21211"),
        (Reply(429, b'{"code": 20429, "message": "Too Many Requests"}'), "retry", "20429"),
        (Reply(503, b"upstream down", "text/plain"), "retry", "upstream down"),
    ],
)
def test_twilio_errors_are_explained_and_mapped(
    http_server: HttpServer, reply: Reply, status: str, explained: str
) -> None:
    http_server.reply(reply)

    [delivery] = deliver(twilio_channel(http_server), sms_message())

    assert delivery.status == status
    assert explained in delivery.detail
    assert delivery.provider_id is None


def test_an_sms_without_a_phone_number_fails_without_calling_twilio(
    http_server: HttpServer,
) -> None:
    [delivery] = deliver(twilio_channel(http_server), sms_message(to=None))

    assert delivery.status == "failed"
    assert http_server.requests == []


# ---------------------------------------------------------------- calls


def call_action(url: str, **changes: Any) -> CallAction:
    fields: dict[str, Any] = {
        "key": "inst-1:crm:3",
        "instance_id": "inst-1",
        "journey": "welcome",
        "step": "crm",
        "profile_id": "u1",
        "action": "add_to_crm",
        "method": "PUT",
        "url": url,
        "headers": {"Authorization": "Bearer ${CRM_TOKEN}", "Content-Type": "application/json"},
        "body": '{"email": "ada@example.com", "list": "${CRM_LIST}"}',
        "timeout": 5.0,
        "at": AT,
    }
    return CallAction(**(fields | changes))


CRM_ENV = {"CRM_TOKEN": "tok-789", "CRM_LIST": "newsletter", "CRM_PATH": "contacts"}


def test_a_call_fills_in_secrets_at_call_time_and_carries_its_idempotency_key(
    http_server: HttpServer,
) -> None:
    call = call_action(f"{http_server.url}/api/${{CRM_PATH}}/u1")

    delivery = run(make_call(call, CRM_ENV, allow=LOOPBACK))

    assert delivery.status == "sent"
    [request] = http_server.requests
    assert (request.method, request.path) == ("PUT", "/api/contacts/u1")
    assert request.headers["authorization"] == "Bearer tok-789"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "inst-1:crm:3"
    assert json.loads(request.body) == {"email": "ada@example.com", "list": "newsletter"}


def test_a_call_naming_a_variable_that_is_not_set_fails_and_sends_nothing(
    http_server: HttpServer,
) -> None:
    env = {"CRM_LIST": "newsletter"}

    delivery = run(make_call(call_action(f"{http_server.url}/api"), env, allow=LOOPBACK))

    assert delivery.status == "failed"
    assert "CRM_TOKEN" in delivery.detail
    assert http_server.requests == []


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(201), "sent"),
        (Reply(503), "retry"),
        (Reply(422), "failed"),
        (Reply(hang=True), "retry"),
    ],
)
def test_call_answers_and_timeouts_map_like_webhooks(
    http_server: HttpServer, reply: Reply, status: str
) -> None:
    http_server.reply(reply)
    call = call_action(f"{http_server.url}/api", timeout=0.05)

    delivery = run(make_call(call, CRM_ENV, allow=LOOPBACK))

    assert delivery.status == status


@pytest.mark.parametrize("value", ["Zoë", "line\nX-Injected: yes"])
def test_a_call_whose_header_cannot_be_sent_fails_and_sends_nothing(
    http_server: HttpServer, value: str
) -> None:
    call = call_action(f"{http_server.url}/api", headers={"X-Name": value})

    delivery = run(make_call(call, CRM_ENV, allow=LOOPBACK))

    assert delivery.status == "failed"
    assert http_server.requests == []


def test_calls_can_share_one_client(http_server: HttpServer) -> None:
    async def scenario() -> list[Delivery]:
        async with http_client(5.0, LOOPBACK) as client:
            call = call_action(f"{http_server.url}/api")
            return [await make_call(call, CRM_ENV, client) for _ in range(2)]

    assert [d.status for d in run(scenario())] == ["sent", "sent"]
    assert len(http_server.requests) == 2


# ---------------------------------------------------------------- file


def test_the_file_channel_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "out" / "messages.jsonl"
    first, second = email_message(), sms_message(key="inst-2:nudge:4")

    deliver(FileChannel("email", path), first)
    [delivery] = deliver(FileChannel("sms", path), second)

    assert delivery.status == "sent"
    lines = path.read_bytes().splitlines()
    assert [msgspec.json.decode(line, type=SendMessage) for line in lines] == [first, second]
    assert set(json.loads(lines[0])) >= {"key", "journey", "step", "to", "content", "at"}


def test_messages_sent_together_each_get_their_own_line(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    channel = FileChannel("email", path)
    messages = [email_message(key=f"k{i}") for i in range(30)]

    async def scenario() -> list[Delivery]:
        deliveries = await asyncio.gather(*(channel.send(m) for m in messages))
        await channel.close()
        return list(deliveries)

    assert {d.status for d in run(scenario())} == {"sent"}
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert sorted(keys) == sorted(m.key for m in messages)


def test_messages_handed_over_at_once_are_written_in_order_in_one_go(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    channel = FileChannel("email", path)
    messages = [email_message(key=f"k{i}") for i in range(30)]

    async def scenario() -> list[Delivery]:
        try:
            return await channel.send_many(messages)
        finally:
            await channel.close()

    assert [d.status for d in run(scenario())] == ["sent"] * 30
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert keys == [m.key for m in messages]

    blocked = FileChannel("email", tmp_path)  # a folder: nothing can be appended to it
    deliveries = run(blocked.send_many(messages[:3]))
    assert [d.status for d in deliveries] == ["retry"] * 3
    assert "IsADirectoryError" in deliveries[0].detail


def test_a_file_channel_that_cannot_write_asks_for_a_retry(tmp_path: Path) -> None:
    [delivery] = deliver(FileChannel("email", tmp_path), email_message())

    assert delivery.status == "retry"
    assert "IsADirectoryError" in delivery.detail


def test_a_relative_file_path_starts_at_the_workspace_folder(tmp_path: Path) -> None:
    config = {"kind": "channel", "name": "email", "type": "file", "path": "messages.jsonl"}

    channel = channel_from_config(config, {}, root=tmp_path)
    deliver(channel, email_message())

    assert (tmp_path / "messages.jsonl").exists()


# ---------------------------------------------------------------- configuration

SMTP = {
    "name": "email",
    "type": "smtp",
    "host": "smtp.example.com",
    "from": SENDER,
    "username": "${SMTP_USER}",
    "password": "${SMTP_PASSWORD}",
}
SMTP_ENV = {"SMTP_USER": "mailer", "SMTP_PASSWORD": "pw"}


def config_error(config: dict[str, Any], env: dict[str, str] | None = None) -> ChannelConfigError:
    with pytest.raises(ChannelConfigError) as caught:
        channel_from_config(config, SMTP_ENV if env is None else env)
    return caught.value


@pytest.mark.parametrize(
    ("config", "kind", "rate"),
    [
        (SMTP | {"rate": 20}, SmtpChannel, 20.0),
        ({"name": "email", "type": "catcher"}, SmtpChannel, None),
        (
            {"name": "hooks", "type": "webhook", "url": "https://h.example.com", "secret": "${S}"},
            WebhookChannel,
            None,
        ),
        (
            {
                "name": "sms",
                "type": "twilio",
                "account_sid": "AC1",
                "from": "+1",
                "auth_token": "${S}",
            },
            TwilioChannel,
            None,
        ),
        ({"name": "email", "type": "file", "path": "m.jsonl", "rate": 0.5}, FileChannel, 0.5),
    ],
)
def test_each_channel_type_is_built_from_its_document(
    config: dict[str, Any], kind: type[Channel], rate: float | None
) -> None:
    channel = channel_from_config(config, SMTP_ENV | {"S": "x"})

    assert isinstance(channel, kind)
    assert channel.name == config["name"]
    assert channel.rate == rate


def test_smtp_credentials_come_from_the_environment_and_ports_follow_security() -> None:
    channel = channel_from_config(SMTP, SMTP_ENV)
    tls = channel_from_config(SMTP | {"security": "tls"}, SMTP_ENV)

    assert isinstance(channel, SmtpChannel)
    assert isinstance(tls, SmtpChannel)
    assert (channel.username, channel.password, channel.port) == ("mailer", "pw", 587)
    assert tls.port == 465


def test_a_missing_environment_variable_is_named() -> None:
    error = config_error(SMTP, {"SMTP_USER": "mailer"})

    assert error.field == "password"
    assert "SMTP_PASSWORD is not set" in str(error)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (SMTP | {"password": "hunter2"}, "password"),
        (
            {"name": "w", "type": "webhook", "url": "https://h.example.com", "secret": "abc"},
            "secret",
        ),
        (
            {
                "name": "sms",
                "type": "twilio",
                "account_sid": "AC1",
                "from": "+1",
                "auth_token": "t",
            },
            "auth_token",
        ),
    ],
)
def test_a_secret_written_into_the_document_is_refused(config: dict[str, Any], field: str) -> None:
    error = config_error(config)

    assert error.field == field
    assert "not the secret itself" in error.message
    assert "${" in error.message


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        (SMTP | {"hots": "x"}, "hots", "unknown key (did you mean 'host'?)"),
        (SMTP | {"type": "smpt"}, "type", "did you mean 'smtp'?"),
        ({"name": "email"}, "type", "is required"),
        ({"name": "w", "type": "webhook", "secret": "${S}"}, "url", "is required"),
        (SMTP | {"port": 0}, "port", "from 1 to 65535"),
        (SMTP | {"port": 70000}, "port", "from 1 to 65535"),
        (SMTP | {"port": "587"}, "port", "from 1 to 65535"),
        (SMTP | {"security": "ssl"}, "security", "one of starttls, tls, none"),
        (SMTP | {"rate": 0}, "rate", "above 0"),
        (SMTP | {"timeout": "soon"}, "timeout", "not a duration"),
        (SMTP | {"timeout": "99999999999999999999d"}, "timeout", "longer than any duration"),
        (SMTP | {"timeout": "9" * 5000 + "s"}, "timeout", "longer than any duration"),
        (SMTP | {"timeout": float("nan")}, "timeout", "above 0, not nan"),
        (SMTP | {"timeout": float("inf")}, "timeout", "above 0, not inf"),
        (SMTP | {"from": "nobody"}, "from", "email address"),
        (SMTP | {"host": 42}, "host", "non-empty string"),
        (SMTP | {"kind": "template"}, "kind", "must be 'channel'"),
        (
            {k: v for k, v in SMTP.items() if k != "password"},
            "password",
            "required when 'username'",
        ),
        ({"name": "w", "type": "webhook", "url": "ftp://x", "secret": "${S}"}, "url", "http"),
        (
            {
                "name": "sms",
                "type": "twilio",
                "account_sid": "../x",
                "from": "+1",
                "auth_token": "${S}",
            },
            "account_sid",
            "letters and digits",
        ),
    ],
)
def test_a_bad_document_is_refused_naming_the_field_and_the_rule(
    config: dict[str, Any], field: str, words: str
) -> None:
    error = config_error(config, SMTP_ENV | {"S": "x"})

    assert error.field == field
    assert words in error.message
    assert str(error).startswith(f"{field}: ")


def test_a_timeout_may_be_written_as_a_duration() -> None:
    config = {"name": "w", "type": "webhook", "url": "https://h.example.com", "secret": "${S}"}

    channel = channel_from_config(config | {"timeout": "2s"}, {"S": "x"})

    assert isinstance(channel, WebhookChannel)


# ---------------------------------------------------------------- rate limits


class VirtualTime:
    """A clock that moves only when someone sleeps: pacing is exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def test_the_rate_limiter_spaces_messages_evenly() -> None:
    time = VirtualTime()
    limiter = RateLimiter(10, clock=time.clock, sleep=time.sleep)

    async def scenario() -> list[float]:
        moments = []
        for _ in range(5):
            await limiter.acquire()
            moments.append(time.now)
        return moments

    assert run(scenario()) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_waiting_senders_go_in_the_order_they_came_and_none_is_dropped() -> None:
    time = VirtualTime()
    limiter = RateLimiter(4, clock=time.clock, sleep=time.sleep)
    order: list[tuple[str, float]] = []

    async def sender(label: str) -> None:
        await limiter.acquire()
        order.append((label, time.now))

    async def scenario() -> None:
        await asyncio.gather(*(sender(label) for label in "abcdef"))

    run(scenario())

    assert [label for label, _ in order] == list("abcdef")
    assert [moment for _, moment in order] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25])


def test_an_idle_channel_saves_up_no_more_than_its_burst() -> None:
    time = VirtualTime()
    limiter = RateLimiter(10, burst=2, clock=time.clock, sleep=time.sleep)

    async def scenario() -> list[float]:
        time.now = 60.0  # a minute of quiet
        moments = []
        for _ in range(3):
            await limiter.acquire()
            moments.append(time.now - 60.0)
        return moments

    assert run(scenario()) == pytest.approx([0.0, 0.0, 0.1])


# ---------------------------------------------------------------- surface


def test_the_channels_package_exports_a_curated_list() -> None:
    assert set(journeyman.channels.__all__) == {
        "CaughtMail",
        "Channel",
        "ChannelConfigError",
        "Delivery",
        "FileChannel",
        "MailCatcher",
        "MissingVariable",
        "RateLimiter",
        "SmtpChannel",
        "TwilioChannel",
        "WebhookChannel",
        "channel_from_config",
        "make_call",
        "substitute",
        "verify_signature",
    }
    for name in journeyman.channels.__all__:
        assert hasattr(journeyman.channels, name), name


def test_only_the_variables_an_action_names_are_filled_in() -> None:
    from journeyman.channels.base import substitute
    from journeyman.channels.calls import _prepare

    env = {"CRM_TOKEN": "t0k3n", "JOURNEYMAN_ADMIN_KEY": "admin"}
    assert substitute("a ${JOURNEYMAN_ADMIN_KEY} b", env, only={"CRM_TOKEN"}) == (
        "a ${JOURNEYMAN_ADMIN_KEY} b"
    )
    call = call_action(
        "https://crm.example.com/c",
        headers={"Authorization": "Bearer ${CRM_TOKEN}"},
        body='{"name": "${JOURNEYMAN_ADMIN_KEY}"}',  # rendered from a hostile trait
    )
    prepared = _prepare(call, env, {"CRM_TOKEN"})
    assert not isinstance(prepared, Delivery)
    _, headers, body = prepared
    assert headers["Authorization"] == "Bearer t0k3n"
    assert body == b'{"name": "${JOURNEYMAN_ADMIN_KEY}"}'
