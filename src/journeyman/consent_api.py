"""The links a recipient follows to say stop: one-click unsubscribe and the preference page.

No key and no login: the signed token in the path is the only credential (see
:mod:`journeyman.runtime.unsubscribe`, which puts the links in messages). A forged,
altered or unknown token gets a 404 and changes nothing.

- ``POST /u/{token}`` (RFC 8058 one-click, body ``List-Unsubscribe=One-Click``):
  unsubscribes the recipient from the message's topic (from its channel, for a message
  without a topic) by recording an ``unsubscribed`` event (source ``one-click``, with the
  message's properties); 200 once it is stored. Repeating it changes nothing more.
- ``GET /u/{token}``: a page with a button that makes that POST.
- ``GET /preferences/{token}``: the profile's topics per channel, "receive nothing by"
  each channel (the ``consent`` trait), and "unsubscribe from all"; ``POST`` the form to
  record the changes as ``unsubscribed`` / ``resubscribed`` events (source
  ``preferences``).

Pages are server-rendered, need no JavaScript, and escape every value.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from journeyman.domain.consent import consent_channels, topic_wanted
from journeyman.domain.model import Subscription
from journeyman.domain.reactions import reaction_event
from journeyman.domain.state import Event, Profile, SendMessage
from journeyman.runtime.processor import Overloaded
from journeyman.runtime.service import Runtime
from journeyman.runtime.unsubscribe import PREFERENCES_PURPOSE, UNSUBSCRIBE_PURPOSE

__all__ = ["consent_routes"]

log = logging.getLogger("journeyman.consent")

FORM_LIMIT = 16 * 1024  # bytes of a posted form
_FIELDS = 500  # fields of a posted form
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5}button{font-size:1rem;padding:.5rem 1rem}fieldset{margin:1rem 0}"
    "label{display:block;margin:.3rem 0}.muted{color:#666}"
)


def consent_routes(runtime: Runtime, unavailable: Callable[[BaseException], bool]) -> list[Route]:
    """The keyless routes; ``unavailable`` says whether a failure to store is a 503."""
    pages = _Pages(runtime, unavailable)
    return [
        Route("/u/{token}", pages.unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", pages.unsubscribe, methods=["POST"]),
        Route("/preferences/{token}", pages.preferences, methods=["GET"]),
        Route("/preferences/{token}", pages.save_preferences, methods=["POST"]),
    ]


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class _Pages:
    def __init__(self, runtime: Runtime, unavailable: Callable[[BaseException], bool]) -> None:
        self.runtime = runtime
        self.unavailable = unavailable

    # one-click unsubscribe

    async def unsubscribe_page(self, request: Request) -> Response:
        try:
            message = await self._message(request)
        except _Refused as refused:
            return _refusal(refused)
        what = html.escape(self._what(message))
        body = (
            f"<h1>Unsubscribe</h1><p>Stop receiving {what}?</p>"
            f'<form method="post" action="{html.escape(request.url.path)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            "<button type=submit>Unsubscribe</button></form>"
        )
        return _page("Unsubscribe", body)

    async def unsubscribe(self, request: Request) -> Response:
        try:
            message = await self._message(request)
            await _read_form(request)  # RFC 8058's body says nothing more than the path
            profile = await self.runtime.reads.profile(message.profile_id)
            if profile is None or not _unsubscribed(profile, message, self._topics()):
                await self._accept([self._one_click(message)])
        except _Refused as refused:
            return _refusal(refused)
        what = html.escape(self._what(message))
        return _page(
            "Unsubscribed", f"<h1>Unsubscribed</h1><p>You will no longer receive {what}.</p>"
        )

    def _one_click(self, message: SendMessage) -> Event:
        where = {"topic": message.topic} if message.topic else {"channel": message.channel}
        now = self.runtime.processor.now()
        return reaction_event("unsubscribed", message, now, source="one-click", **where)

    def _what(self, message: SendMessage) -> str:
        topic = self._topics().get(message.topic or "")
        if topic is not None:
            return topic.description or topic.name
        if message.topic:
            return message.topic
        return f"these messages by {message.channel}"

    async def _message(self, request: Request) -> SendMessage:
        fields = self.runtime.links.read(UNSUBSCRIBE_PURPOSE, request.path_params["token"])
        message = await self.runtime.reads.sent_message(fields[0]) if fields else None
        if message is None:
            raise _Refused(404, "This link is not valid.")
        return message

    # the preference page

    async def preferences(self, request: Request) -> Response:
        try:
            profile = await self._profile(request)
        except _Refused as refused:
            return _refusal(refused)
        everything = profile.traits.get("unsubscribed") is True
        choices = _choices(profile, self._topics())
        silent = _silent(profile, self._channels())
        return self._preferences_page(request, choices, silent, "", everything)

    async def save_preferences(self, request: Request) -> Response:
        try:
            profile = await self._profile(request)
            form = await _read_form(request)
            before = _choices(profile, self._topics())
            wanted = {name for name in form.get("topic", []) if name in before}
            after = {name: name in wanted for name in before}
            everything = form.get("all") == ["yes"]
            channels = self._channels()
            silent = {name for name in form.get("nothing", []) if name in channels}
            events = self._changes(profile, before, after, everything)
            events += self._channel_changes(profile, _silent(profile, channels), silent)
            if events:
                await self._accept(events)
        except _Refused as refused:
            return _refusal(refused)
        saved = "Your choices are saved."
        return self._preferences_page(request, after, silent, saved, everything)

    def _changes(
        self,
        profile: Profile,
        before: Mapping[str, bool],
        after: Mapping[str, bool],
        everything: bool,
    ) -> list[Event]:
        now = self.runtime.processor.now()

        def event(name: str, **where: str) -> Event:
            properties = {**where, "source": "preferences"}
            return Event(name=name, profile_id=profile.id, timestamp=now, properties=properties)

        events = [
            event("resubscribed" if wanted else "unsubscribed", topic=topic)
            for topic, wanted in after.items()
            if before[topic] != wanted
        ]
        if everything != (profile.traits.get("unsubscribed") is True):
            events.append(event("unsubscribed" if everything else "resubscribed"))
        return events

    def _channel_changes(self, profile: Profile, before: set[str], after: set[str]) -> list[Event]:
        """``unsubscribed`` for each channel newly silenced (``consent: {channel: false}``),
        ``resubscribed`` for each one allowed again."""
        now = self.runtime.processor.now()
        return [
            Event(
                name="unsubscribed" if channel in after else "resubscribed",
                profile_id=profile.id,
                timestamp=now,
                properties={"channel": channel, "source": "preferences"},
            )
            for channel in sorted(before ^ after)
        ]

    def _preferences_page(
        self,
        request: Request,
        choices: Mapping[str, bool],
        silent: set[str],
        note: str,
        everything: bool,
    ) -> Response:
        topics = self._topics()
        channels: dict[str, list[Subscription]] = {name: [] for name in self._channels()}
        for name in choices:
            channels.setdefault(topics[name].channel, []).append(topics[name])
        parts = ["<h1>Your subscriptions</h1>"]
        if note:
            parts.append(f"<p><strong>{html.escape(note)}</strong></p>")
        parts.append(f'<form method="post" action="{html.escape(request.url.path)}">')
        for channel, listed in sorted(channels.items()):
            parts.append(f"<fieldset><legend>{html.escape(channel)}</legend>")
            parts += [_topic_box(topic, choices[topic.name]) for topic in listed]
            parts.append(_channel_box(channel, channel in silent))
            parts.append("</fieldset>")
        checked = " checked" if everything else ""
        parts.append(
            f'<label><input type="checkbox" name="all" value="yes"{checked}> '
            "Unsubscribe from all (only messages you must receive, such as receipts, still "
            "come)</label><p><button type=submit>Save</button></p></form>"
        )
        return _page("Your subscriptions", "".join(parts))

    async def _profile(self, request: Request) -> Profile:
        fields = self.runtime.links.read(PREFERENCES_PURPOSE, request.path_params["token"])
        profile = await self.runtime.reads.profile(fields[0]) if fields else None
        if profile is None:
            raise _Refused(404, "This link is not valid.")
        return profile

    # both

    def _topics(self) -> Mapping[str, Subscription]:
        return self.runtime.workspace.subscriptions

    def _channels(self) -> list[str]:
        return consent_channels(self.runtime.workspace)

    async def _accept(self, events: list[Event]) -> None:
        try:
            statuses = await self.runtime.accept(events)
        except Overloaded:
            raise _Refused(429, "Too busy just now: try again in a moment.", _RETRY) from None
        except Exception as error:
            if not self.unavailable(error):
                raise
            log.warning("a consent change could not be stored: %r", error)
            raise _Refused(503, "Not saved: try again in a moment.", _RETRY) from None
        # Shown with the API's ingest on the console's events page.
        self.runtime.tail.accepted(events, statuses, self.runtime.processor.now())


_RETRY = {"Retry-After": "1"}


def _choices(profile: Profile, topics: Mapping[str, Subscription]) -> dict[str, bool]:
    """topic -> whether the profile receives it, for every topic of the workspace."""
    return {name: topic_wanted(profile.traits, name, topics) for name in sorted(topics)}


def _silent(profile: Profile, channels: list[str]) -> set[str]:
    """The channels the profile receives nothing by (but what it must receive)."""
    said = profile.traits.get("consent")
    if not isinstance(said, dict):
        return set()
    return {name for name in channels if said.get(name) is False}


def _unsubscribed(
    profile: Profile, message: SendMessage, topics: Mapping[str, Subscription]
) -> bool:
    """Whether a one-click unsubscribe from ``message`` would change nothing."""
    if message.topic:
        return not topic_wanted(profile.traits, message.topic, topics)
    consent = profile.traits.get("consent")
    return isinstance(consent, dict) and consent.get(message.channel) is False


async def _read_form(request: Request) -> dict[str, list[str]]:
    """The fields of a posted form (any other body reads as no fields); 413 over the limit."""
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                raise _Refused(413, f"The form is larger than {FORM_LIMIT} bytes.")
    except ClientDisconnect:
        raise _Refused(400, "The form did not arrive whole.") from None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    try:
        return parse_qs(body.decode("utf-8", "replace"), max_num_fields=_FIELDS)
    except ValueError:
        raise _Refused(413, f"The form has more than {_FIELDS} fields.") from None


def _topic_box(topic: Subscription, checked: bool) -> str:
    name = html.escape(topic.name)
    about = f' <span class="muted">{html.escape(topic.description)}</span>'
    return (
        f'<label><input type="checkbox" name="topic" value="{name}"'
        f"{' checked' if checked else ''}> {name}{about if topic.description else ''}</label>"
    )


def _channel_box(channel: str, checked: bool) -> str:
    name = html.escape(channel)
    return (
        f'<label class="channel"><input type="checkbox" name="nothing" value="{name}"'
        f"{' checked' if checked else ''}> Receive nothing by {name}</label>"
    )


def _refusal(refused: _Refused) -> Response:
    body = f"<h1>Sorry</h1><p>{html.escape(str(refused))}</p>"
    return _page("Sorry", body, refused.status, refused.headers)


def _page(
    title: str, body: str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(text, status, {**HEADERS, **(headers or {})})
