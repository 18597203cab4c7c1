"""SMS through Twilio's Messages API (or any service that speaks its shape).

```yaml
kind: channel
name: sms
type: twilio
account_sid: AC0123456789abcdef0123456789abcdef   # or "${TWILIO_ACCOUNT_SID}"
auth_token: "${TWILIO_TOKEN}"  # always an environment variable, never the token itself
from: "+15005550006"           # the sending number
base_url: https://api.twilio.com   # default; point it elsewhere for a compatible service
timeout: 10                    # seconds (or a duration such as 10s), default 10
rate: 1                        # messages per second, default unlimited
allow: [10.0.0.0/8]            # non-public addresses base_url may reach (none by default)
help: "Example: reply STOP to stop. Support: example.com/help"  # the answer to HELP
```

Like every HTTP channel, it connects only to public addresses unless ``allow`` names
the address, its network or the host (see :mod:`journeyman.channels.network`), and
follows no redirect.

Each message is a form ``POST`` of ``To`` (the profile's ``phone``), ``From`` and
``Body`` to ``{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``, with HTTP
Basic auth (the account SID and the auth token) and the message's idempotency key in
``I-Twilio-Idempotency-Token``, so a retried send is not sent twice. The ``sid`` Twilio
answers with is the message's ``provider_id``. ``StatusCallback`` is the public URL of
``/hooks/twilio/{name}/status/{token}`` (the token names the message), so Twilio reports
``delivered``, ``undelivered`` and ``failed`` back; an SMS to the ``from`` number is
read at ``/hooks/twilio/{name}/inbound`` (``STOP``, ``START``, ``HELP``), to be set as the
number's messaging webhook in Twilio (see :mod:`journeyman.hooks`).

Outcomes: a 2xx answer is ``sent``; 408, 429 (Twilio's rate limit), 5xx, a timeout or a
network error is ``retry``; any other answer, such as 400 for a number that cannot
receive SMS, is ``failed``, with Twilio's explanation in the message log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from journeyman.channels.base import (
    Channel,
    ChannelConfigError,
    ConfigReader,
    Delivery,
    clip,
    delivery_for_http_status,
    http_client,
    http_request,
)
from journeyman.domain.actions import Allow
from journeyman.domain.state import SendMessage

__all__ = ["TWILIO_API", "TwilioChannel"]

TWILIO_API = "https://api.twilio.com"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
#: The message header that carries the status callback URL (set at send time).
STATUS_CALLBACK = "StatusCallback"
KEYS = ("account_sid", "auth_token", "from", "base_url", "timeout", "allow", "help")


class TwilioChannel(Channel):
    def __init__(
        self,
        name: str,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        base_url: str = TWILIO_API,
        timeout: float = 10.0,
        rate: float | None = None,
        allow: Allow | None = None,
        help_text: str | None = None,
    ) -> None:
        self.name = name
        self.rate = rate
        self.sender = sender
        account = quote(account_sid, safe="")
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"
        self.auth_token = auth_token  # also what Twilio signs its webhooks with
        self.help_text = help_text
        auth = httpx.BasicAuth(account_sid, auth_token)
        self._client = http_client(timeout, allow, auth=auth)

    async def send(self, message: SendMessage) -> Delivery:
        if not message.to:
            return Delivery("failed", "the message has no phone number to send to")
        form = {"To": message.to, "From": self.sender, "Body": message.content.get("body", "")}
        callback = message.headers.get(STATUS_CALLBACK)
        if callback:
            form[STATUS_CALLBACK] = callback
        headers = {IDEMPOTENCY_HEADER: message.key}
        response = await http_request(self._client, "POST", self.url, data=form, headers=headers)
        if isinstance(response, Delivery):
            return response
        answer = _json_object(response)
        sid = answer.get("sid")
        return delivery_for_http_status(
            response.status_code,
            _detail(response, answer),
            sid if isinstance(sid, str) else None,
        )

    async def close(self) -> None:
        await self._client.aclose()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _detail(response: httpx.Response, answer: dict[str, Any]) -> str:
    """Twilio's status (``queued``) or its error (code and message), else the raw body."""
    if "message" in answer or "code" in answer:
        explained = f"error {answer.get('code')}: {answer.get('message')}"
    elif "status" in answer:
        explained = str(answer["status"])
    else:
        explained = response.text
    return clip(f"{response.status_code} {response.reason_phrase}: {explained}")


def from_config(reader: ConfigReader, name: str) -> TwilioChannel:
    account_sid = reader.text("account_sid")
    if not account_sid.isalnum() and not reader.is_reference("account_sid"):
        # A typo caught early; a value from the environment is percent-encoded in the path.
        raise ChannelConfigError(
            "account_sid", f"must be letters and digits, such as AC0123..., not {account_sid!r}"
        )
    return TwilioChannel(
        name,
        account_sid=account_sid,
        auth_token=reader.secret("auth_token", "TWILIO_TOKEN"),
        sender=reader.text("from"),
        base_url=reader.url("base_url", TWILIO_API),
        timeout=reader.seconds("timeout", 10.0),
        rate=reader.rate(),
        allow=reader.allow(),
        help_text=reader.optional_text("help"),
    )
