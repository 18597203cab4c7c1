"""Delivery outcomes as events, and the checks of providers' signatures: pure parts."""

from __future__ import annotations

import base64
import hashlib
import hmac

import aiosmtplib
import pytest

from journeyman.channels.smtp import _for_error
from journeyman.domain.feedback import HARD_BOUNCE, delivery_events
from journeyman.domain.state import CallAction, SendMessage
from journeyman.hooks import esp_signature_ok, twilio_signature
from tests.conftest import START

MESSAGE = SendMessage(
    key="inst-1:greet",
    instance_id="inst-1",
    journey="welcome",
    step="greet",
    profile_id="u1",
    channel="email",
    template="hello_email",
    to="ada@example.com",
    content={"subject": "Hi"},
    at=START,
    version=3,
)


def test_a_message_sent_is_one_message_sent_event_keyed_by_the_message() -> None:
    [event] = delivery_events(MESSAGE, True, "250 OK", START)
    assert event.name == "message_sent"
    assert event.profile_id == "u1"
    assert event.message_id == "sent:inst-1:greet"
    assert event.properties == {
        "journey": "welcome",
        "version": 3,
        "step": "greet",
        "instance": "inst-1",
        "message": "inst-1:greet",
        "channel": "email",
    }


def test_a_hard_bounce_is_a_failure_and_a_bounce_of_the_address() -> None:
    failed, bounced = delivery_events(MESSAGE, False, HARD_BOUNCE + "550 5.1.1 gone", START)
    assert (failed.name, failed.message_id) == ("message_failed", "failed:inst-1:greet")
    assert bounced.name == "message_bounced"
    assert bounced.message_id == "bounced:inst-1:greet"
    assert bounced.properties["bounce"] == "hard"
    assert bounced.properties["address"] == "ada@example.com"
    assert bounced.properties["reason"] == "550 5.1.1 gone"


def test_a_failure_given_up_after_retries_is_no_bounce() -> None:
    events = delivery_events(MESSAGE, False, "gave up after 8 attempts: 451 later", START)
    assert [e.name for e in events] == ["message_failed"]
    assert events[0].properties["reason"] == "gave up after 8 attempts: 451 later"


def test_a_call_makes_no_message_events() -> None:
    call = CallAction(
        key="k",
        instance_id="i",
        journey="j",
        step="s",
        profile_id="u1",
        action="crm",
        method="POST",
        url="https://crm.example.com",
        headers={},
        body=None,
        timeout=5,
        at=START,
    )
    assert delivery_events(call, True, "200", START) == []


@pytest.mark.parametrize(
    ("error", "bounce"),
    [
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no", "a")]), True),
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(451, "no", "a")]),
            False,
        ),
        (aiosmtplib.SMTPDataError(554, "5.7.1 rejected as spam"), False),
        (aiosmtplib.SMTPDataError(550, "5.1.1 mailbox unknown"), True),
        (aiosmtplib.SMTPSenderRefused(553, "5.7.1 sender", "j@example.com"), False),
    ],
    ids=["rcpt-550", "rcpt-451", "data-spam", "data-bad-mailbox", "sender"],
)
def test_only_a_permanent_refusal_of_the_recipient_is_a_hard_bounce(
    error: Exception, bounce: bool
) -> None:
    delivery = _for_error(error)
    assert delivery.detail.startswith(HARD_BOUNCE) == bounce
    assert delivery.status == ("retry" if "451" in delivery.detail else "failed")


def test_an_email_services_signature_is_the_hmac_of_the_body() -> None:
    body = b'[{"type": "open", "message": "k"}]'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert esp_signature_ok("s3cret", body, good)
    assert esp_signature_ok("s3cret", body, good.upper().replace("SHA256=", "sha256="))
    assert not esp_signature_ok("s3cret", body + b" ", good)
    assert not esp_signature_ok("other", body, good)
    assert not esp_signature_ok("s3cret", body, good.replace("sha256=", "sha1="))
    assert not esp_signature_ok("s3cret", body, None)


def test_twilios_signature_covers_the_url_and_every_field_in_name_order() -> None:
    url = "https://journeys.example.com/hooks/twilio/sms/inbound"
    params = [("To", "+15005550006"), ("Body", "STOP"), ("From", "+15550100")]
    data = url + "Body" + "STOP" + "From" + "+15550100" + "To" + "+15005550006"
    expected = base64.b64encode(hmac.new(b"tok", data.encode(), hashlib.sha1).digest()).decode()
    assert twilio_signature("tok", url, params) == expected
    assert twilio_signature("tok", url + "?x=1", params) != expected
    assert twilio_signature("tok", url, [*params, ("Extra", "")]) != expected
