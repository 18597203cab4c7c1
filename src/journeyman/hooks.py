"""Provider feedback: what email and SMS providers tell us about our messages, as events.

Keyless routes, each checked by the provider's signature before anything is read:

- ``POST /hooks/email/{channel}``: an email service's events (bounces, complaints,
  deliveries, opens, clicks) in journeyman's own JSON shape (:data:`ESP_FIELDS`), signed
  with HMAC-SHA256 of the raw body under the channel's ``feedback_secret``, in
  ``X-Journeyman-Signature: sha256=<hex>``. A forged or missing signature is 401 and
  changes nothing; events about messages we do not know are skipped and counted.
- ``POST /hooks/twilio/{channel}/status/{token}``: Twilio's status callback for an SMS
  (the URL the SMS channel gave as ``StatusCallback``; the token names the message).
- ``POST /hooks/twilio/{channel}/inbound``: an SMS to our number: ``STOP`` and its kin opt
  the number out of SMS, ``START`` back in, ``HELP`` answers with the channel's ``help``.

Twilio's requests are checked with ``X-Twilio-Signature`` (HMAC-SHA1 of the public URL
and the sorted form parameters, under the account's auth token); a forged one is 403.

Every event goes through ``runtime.accept`` and the answer comes after it, so what a
provider was told we took is stored. Each event's messageId comes from what it reports,
so a provider that sends the same report again changes nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.channels.base import Channel
from journeyman.domain.reactions import reaction_event
from journeyman.domain.state import Event, SendMessage
from journeyman.runtime.callbacks import STATUS_PURPOSE
from journeyman.runtime.processor import Overloaded
from journeyman.runtime.service import Runtime

__all__ = [
    "ESP_FIELDS",
    "OPT_IN",
    "OPT_OUT",
    "SIGNATURE_HEADER",
    "esp_signature_ok",
    "feedback_routes",
    "twilio_signature",
]

log = logging.getLogger("journeyman.hooks")

SIGNATURE_HEADER = "X-Journeyman-Signature"
BODY_LIMIT = 1_000_000  # bytes of one webhook call
EVENTS_LIMIT = 1000  # events in one call
TEXT_LIMIT = 2000  # characters of a reason, an address, a URL or a user agent

#: The fields of one event of an email service's webhook call (a JSON array of them).
ESP_FIELDS = {
    "type": "bounce | complaint | delivered | open | click | unsubscribe (required)",
    "message": "the message key (X-Journeyman-Key of the email) (required)",
    "id": "the provider's id of this report (optional; makes a repeat a duplicate)",
    "address": "the recipient (optional; default the address the message went to)",
    "bounce": "hard | soft (required for a bounce)",
    "reason": "the provider's explanation (optional)",
    "url": "the link clicked (for a click)",
    "user_agent": "the reader's user agent (for an open or a click)",
    "machine": "true for an open by a mail proxy (for an open)",
    "timestamp": "ISO 8601 time or Unix seconds (optional; default now)",
}
_ESP_EVENTS = {
    "bounce": "message_bounced",
    "complaint": "message_complained",
    "delivered": "message_sent",
    "open": "message_opened",
    "click": "message_clicked",
    "unsubscribe": "unsubscribed",
}

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
PHONE_PROFILES = 20  # profiles one number opts out at most
_TWIML = "application/xml"
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Twilio error codes that say the number itself cannot get SMS: a hard bounce.
# 21211 invalid number, 21614 not a mobile number, 30005 unknown handset, 30006 landline.
_UNREACHABLE = frozenset({"21211", "21614", "30005", "30006"})
# Twilio's MessageStatus values that are final outcomes, and what they mean.
_TWILIO_STATUS = {"delivered": True, "undelivered": False, "failed": False}


class _Refused(Exception):
    def __init__(self, status: int, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"field": field, "rule": rule, "message": message}}


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status, media_type="application/json")


def feedback_routes(runtime: Runtime, unavailable: Callable[[BaseException], bool]) -> list[Route]:
    """The provider feedback routes of ``runtime`` (serve, alone or in front of a bus);
    ``unavailable`` says whether a failure is the store or the bus being away (a 503 the
    provider retries) rather than a fault in journeyman (a 500, logged)."""
    hooks = _Hooks(runtime, unavailable)
    return [
        Route("/hooks/email/{channel}", hooks.guarded(hooks.email), methods=["POST"]),
        Route(
            "/hooks/twilio/{channel}/status/{token}",
            hooks.guarded(hooks.twilio_status),
            methods=["POST"],
        ),
        Route("/hooks/twilio/{channel}/inbound", hooks.guarded(hooks.inbound), methods=["POST"]),
    ]


class _Hooks:
    def __init__(self, runtime: Runtime, unavailable: Callable[[BaseException], bool]) -> None:
        self.runtime = runtime
        self.unavailable = unavailable

    def guarded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except _Refused as refused:
                return _json(refused.body, refused.status)
            except Overloaded:
                return _json(_problem("body", "overloaded", "too busy: try again soon"), 429)
            except Exception as error:
                if self.unavailable(error):  # the store or the bus is away: it tries again
                    log.warning("provider feedback could not be stored: %r", error)
                    return _json(_problem("body", "unavailable", "not stored: try again"), 503)
                log.exception("provider feedback failed for a fault in journeyman")
                return _json(_problem("body", "internal", "journeyman failed on this call"), 500)

        return guarded

    # email service

    async def email(self, request: Request) -> Response:
        channel = self._channel(request, "feedback_secret")
        body = await _body(request)
        secret = channel.feedback_secret
        assert secret is not None
        if not esp_signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
            raise _Refused(401, SIGNATURE_HEADER, "signature", "the signature does not match")
        items = _esp_items(body)
        now = self.runtime.processor.now()
        events: list[Event] = []
        skipped = 0
        for item in items:
            message = await self.runtime.reads.sent_message(item["message"])
            if message is None or message.channel != channel.name:
                skipped += 1
                continue
            events.append(_esp_event(channel.name, item, message, now))
        results = await self.runtime.accept(events) if events else []
        return _json(
            {
                "accepted": results.count("accepted"),
                "duplicate": results.count("duplicate"),
                "skipped": skipped,
            }
        )

    # Twilio

    async def twilio_status(self, request: Request) -> Response:
        channel = self._channel(request, "auth_token")
        form = await self._signed_form(request, channel)
        fields = self.runtime.links.read(STATUS_PURPOSE, request.path_params["token"])
        if fields is None or len(fields) != 1:
            raise _Refused(404, "token", "token", "no such message")
        message = await self.runtime.reads.sent_message(fields[0])
        status = form.get("MessageStatus", "")
        if message is None or message.channel != channel.name or status not in _TWILIO_STATUS:
            return Response(status_code=204)  # not final (queued, sent), or not ours any more
        now = self.runtime.processor.now()
        await self.runtime.accept(_twilio_events(message, status, form, now))
        return Response(status_code=204)

    async def inbound(self, request: Request) -> Response:
        channel = self._channel(request, "auth_token")
        form = await self._signed_form(request, channel)
        word = form.get("Body", "").strip().upper()
        number = form.get("From", "")
        if word in HELP:
            help_text = getattr(channel, "help_text", None)
            return Response(_twiml(help_text), media_type=_TWIML)
        if (word not in OPT_OUT and word not in OPT_IN) or not number:
            return Response(_twiml(None), media_type=_TWIML)
        name = "unsubscribed" if word in OPT_OUT else "resubscribed"
        profiles = await self.runtime.reads.profiles_with_trait("phone", number, PHONE_PROFILES)
        now = self.runtime.processor.now()
        sid = form.get("MessageSid", "")
        events = [
            Event(
                name=name,
                profile_id=profile,
                timestamp=now,
                properties={"channel": "sms", "source": "sms"},
                message_id=f"sms:{sid}:{profile}" if sid else None,
            )
            for profile in profiles
        ]
        if events:
            await self.runtime.accept(events)
        return Response(_twiml(None), media_type=_TWIML)

    async def _signed_form(self, request: Request, channel: Channel) -> dict[str, str]:
        """The form of a request Twilio signed; 403 if it did not."""
        body = await _body(request)
        try:
            pairs = _form_pairs(body)
        except ValueError as error:
            raise _Refused(400, "body", "form", f"not a form: {error}") from None
        url = self.runtime.links.base + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        token = getattr(channel, "auth_token", "")
        given = request.headers.get("X-Twilio-Signature", "")
        expected = twilio_signature(token, url, pairs)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise _Refused(403, "X-Twilio-Signature", "signature", "the signature does not match")
        return dict(pairs)

    def _channel(self, request: Request, needs: str) -> Channel:
        """The channel the path names, if it takes this feedback (it has ``needs``)."""
        name = request.path_params["channel"]
        channel = self.runtime.channels.get(name)
        if channel is None or not getattr(channel, needs, None):
            raise _Refused(404, "channel", "exists", f"no channel {name!r} takes this feedback")
        return channel


# checks


def esp_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``secret``."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header[len("sha256=") :].strip().lower().encode(), expected.encode())


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature`` for a form POST to ``url``: base64 of HMAC-SHA1,
    under the auth token, of the URL followed by each parameter's name and value, sorted
    by name (and the values of one name sorted)."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > BODY_LIMIT:
        raise _Refused(413, "body", "size", f"the body must be at most {BODY_LIMIT} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_LIMIT:
            raise _Refused(413, "body", "size", f"the body must be at most {BODY_LIMIT} bytes")
    return body


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return parse_qsl(text, keep_blank_values=True, max_num_fields=200)


# the email service's shape


def _esp_items(body: bytes) -> list[dict[str, Any]]:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise _Refused(400, "body", "json", "the body must be a JSON array of events") from None
    if not isinstance(data, list):
        raise _Refused(400, "body", "type", "the body must be a JSON array of events")
    if len(data) > EVENTS_LIMIT:
        raise _Refused(413, "body", "size", f"at most {EVENTS_LIMIT} events per call")
    return [_esp_item(index, item) for index, item in enumerate(data)]


def _esp_item(index: int, item: Any) -> dict[str, Any]:
    where = f"[{index}]"
    if not isinstance(item, dict):
        raise _Refused(400, where, "type", f"{where} must be an object")
    kind = item.get("type")
    if kind not in _ESP_EVENTS:
        rule = f"{where}.type must be one of {', '.join(_ESP_EVENTS)}"
        raise _Refused(400, f"{where}.type", "enum", rule)
    for key in ("message", "id", "address", "reason", "url", "user_agent"):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > TEXT_LIMIT):
            rule = f"{where}.{key} must be a string of at most {TEXT_LIMIT} characters"
            raise _Refused(400, f"{where}.{key}", "type", rule)
    if not item.get("message"):
        raise _Refused(400, f"{where}.message", "required", f"{where}.message is required")
    if kind == "bounce" and item.get("bounce") not in ("hard", "soft"):
        raise _Refused(400, f"{where}.bounce", "enum", f"{where}.bounce must be hard or soft")
    if kind == "click" and not item.get("url"):
        raise _Refused(400, f"{where}.url", "required", f"{where}.url is required for a click")
    if not isinstance(item.get("machine", False), bool):
        raise _Refused(400, f"{where}.machine", "type", f"{where}.machine must be true or false")
    item["at"] = _timestamp(item.get("timestamp"), where)
    return item


def _timestamp(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            at = datetime.fromisoformat(value)
            return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    rule = f"{where}.timestamp must be an ISO 8601 time or Unix seconds"
    raise _Refused(400, f"{where}.timestamp", "format", rule)


def _esp_event(channel: str, item: Mapping[str, Any], message: SendMessage, now: datetime) -> Event:
    kind = item["type"]
    at = item["at"] or now
    extra: dict[str, Any] = {"source": "provider"}
    address = item.get("address") or message.to or ""
    if kind == "bounce":
        extra.update(bounce=item["bounce"], address=address, reason=item.get("reason") or "")
    elif kind == "complaint":
        extra.update(address=address)
    elif kind == "delivered":
        extra.update(delivered=True)
    elif kind == "open":
        extra.update(user_agent=item.get("user_agent") or "", machine=item.get("machine", False))
    elif kind == "click":
        extra.update(url=item["url"], user_agent=item.get("user_agent") or "")
    elif kind == "unsubscribe":  # as the one-click link does: the topic, else the channel
        extra.update({"topic": message.topic} if message.topic else {"channel": message.channel})
    return reaction_event(
        _ESP_EVENTS[kind], message, at, message_id=_esp_id(channel, item, message), **extra
    )


def _esp_id(channel: str, item: Mapping[str, Any], message: SendMessage) -> str:
    """The messageId of a report: a hard bounce is one per message (the same as the one the
    mail server gave at send time); others by the provider's id, else by what they say."""
    if item["type"] == "bounce" and item["bounce"] == "hard":
        return f"bounced:{message.key}"
    if item.get("id"):
        said = f"{channel}\0{item['id']}"
    else:
        fields = ("type", "message", "address", "bounce", "url", "timestamp", "reason")
        said = "\0".join(str(item.get(f, "")) for f in fields)
    return f"provider:{hashlib.sha256(said.encode()).hexdigest()[:32]}"


# Twilio


def _twilio_events(
    message: SendMessage, status: str, form: Mapping[str, str], now: datetime
) -> list[Event]:
    sid = form.get("MessageSid", "")
    if _TWILIO_STATUS[status]:
        sent = reaction_event(
            "message_sent",
            message,
            now,
            message_id=f"delivered:{message.key}",
            source="provider",
            delivered=True,
        )
        return [sent]
    code = form.get("ErrorCode", "")
    reason = f"{status}" + (f" (error {code})" if code else "")
    bounced = []
    if code in _UNREACHABLE and message.to:
        bounced.append(
            reaction_event(
                "message_bounced",
                message,
                now,
                message_id=f"bounced:{message.key}",
                source="provider",
                bounce="hard",
                address=message.to,
                reason=reason,
            )
        )
    return [
        *bounced,
        reaction_event(
            "message_failed",
            message,
            now,
            message_id=f"undelivered:{message.key}",
            source="provider",
            reason=reason,
            provider_id=sid,
        ),
    ]


def _twiml(text: str | None) -> str:
    if not text:
        return _EMPTY_TWIML
    message = f"<Message>{escape(text)}</Message>"
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{message}</Response>'


def _problem(field: str, rule: str, message: str) -> dict[str, Any]:
    return {"error": {"field": field, "rule": rule, "message": message}}
