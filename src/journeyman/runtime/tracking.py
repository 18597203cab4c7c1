"""Opens and clicks of email, at both ends: the send-time rewrite, and what a fetch records.

:class:`Tracker` is one of the dispatcher's ``prepare`` steps: just before an email goes
out, it rewrites the tracked links of the HTML part to ``{public URL}/c/{token}`` and
adds the pixel ``{public URL}/o/{token}``, unless the message's template (the one of the
journey version the message belongs to) has ``tracking: false`` or is
``transactional: true``. Nothing of it is stored: the outbox
keeps the message as rendered, and a click finds its link there again.

:func:`click_event` and :func:`open_event` turn a verified token and the stored message into
the ``message_clicked`` / ``message_opened`` event (see
:mod:`journeyman.domain.reactions`). Their message ids are keyed with the deployment's
secret and made of the message, the link and a short window of time, never of anything
in the request: a browser that repeats a request at once records one event, a click made
again later records another, and no caller can guess an id to block one in advance.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

import msgspec

from journeyman.domain.model import Journey, MessageTemplate, Workspace
from journeyman.domain.reactions import reaction_event
from journeyman.domain.state import Event, SendMessage
from journeyman.domain.tracking import prefetcher, rewrite, tracked_link
from journeyman.runtime.links import Links

__all__ = [
    "CLICK",
    "CLICK_PATH",
    "CLICK_WINDOW",
    "OPEN",
    "OPEN_PATH",
    "OPEN_WINDOW",
    "Tracker",
    "click_event",
    "open_event",
    "tracks",
]

CLICK, OPEN = "click", "open"  # the purposes tokens are signed for
CLICK_PATH, OPEN_PATH = "/c", "/o"
# Requests for the same link (or the same message's pixel) within one window of this many
# seconds are one click (one open): a double click, a browser retrying, a mail client
# drawing the message twice.
CLICK_WINDOW = 2
OPEN_WINDOW = 60
USER_AGENT_LIMIT = 512  # characters of the User-Agent kept with an event


def tracks(template: MessageTemplate | None) -> bool:
    """Whether email sent with ``template`` is tracked (an unknown template is not)."""
    return template is not None and template.channel == "email" and template.tracking


class Tracker:
    """The send-time step that adds click links and the open pixel to tracked email."""

    def __init__(
        self,
        links: Callable[[], Links],
        versions: Callable[[str, int], Journey | None],
        workspace: Callable[[], Workspace],
    ) -> None:
        self.links = links  # read at each send: a process's links are made at its start
        self.versions = versions
        self.workspace = workspace

    def template(self, message: SendMessage) -> MessageTemplate | None:
        """The template the message was rendered with: its journey version's, else the
        running workspace's (a version no longer kept in this process)."""
        journey = self.versions(message.journey, message.version) if message.version else None
        templates = journey.templates if journey is not None else None
        if templates is None:
            templates = self.workspace().templates
        return templates.get(message.template)

    def __call__(self, message: SendMessage) -> SendMessage:
        body = message.content.get("html")
        if message.channel != "email" or not body or not tracks(self.template(message)):
            return message
        links = self.links()
        html = rewrite(
            body,
            lambda index: links.url(CLICK_PATH, CLICK, message.key, str(index)),
            links.url(OPEN_PATH, OPEN, message.key),
            links.base,
        )
        return msgspec.structs.replace(message, content={**message.content, "html": html})


def clicked_url(message: SendMessage, index: str, own: str) -> str | None:
    """The address of tracked link number ``index`` of the message, or None."""
    if not (index.isascii() and index.isdigit()) or len(index) > 6:
        return None
    return tracked_link(message.content.get("html") or "", int(index), own)


def click_event(
    message: SendMessage, url: str, index: str, user_agent: str, now: datetime, secret: bytes
) -> Event:
    """``message_clicked`` for link ``index`` (whose address is ``url``) of ``message``."""
    window = str(int(now.timestamp()) // CLICK_WINDOW)
    return reaction_event(
        "message_clicked",
        message,
        now,
        message_id=_event_id(secret, CLICK, message.key, index, window),
        url=url,
        user_agent=user_agent[:USER_AGENT_LIMIT],
    )


def open_event(message: SendMessage, user_agent: str, now: datetime, secret: bytes) -> Event:
    """``message_opened`` for ``message``, flagged ``machine`` for a mail proxy's fetch."""
    proxy = prefetcher(user_agent)  # a name from journeyman's own list, or None
    window = str(int(now.timestamp()) // OPEN_WINDOW)
    kind = f"machine {proxy}" if proxy else "person"
    return reaction_event(
        "message_opened",
        message,
        now,
        message_id=_event_id(secret, OPEN, message.key, kind, window),
        user_agent=user_agent[:USER_AGENT_LIMIT],
        machine=proxy is not None,
    )


def _event_id(secret: bytes, *parts: str) -> str:
    mac = hmac.new(secret, "\x00".join(("reaction", *parts)).encode(), hashlib.sha256)
    return f"jm-{parts[0]}-{mac.hexdigest()[:32]}"
