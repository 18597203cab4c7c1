"""The recipient's own unsubscribe and preference links, added to each message as it goes.

The engine renders ``{{ unsubscribe_url }}`` and ``{{ preferences_url }}`` as fixed
placeholders (:mod:`journeyman.domain.consent`): it does not know the public URL of the
process that will send. :class:`ConsentLinks`, a step of ``Dispatcher.prepare`` in serve
and in workers, puts the signed links in their place, and gives every email that is not
transactional the headers of RFC 2369 and RFC 8058::

    List-Unsubscribe: <https://{public url}/u/{token}>,
        <mailto:{address}?subject=unsubscribe-{token}>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

The unsubscribe token signs the message's key (the message says whose it is, and its
topic); the preferences token signs the profile id. A customer value that equals a
placeholder gains nothing: it becomes the recipient's own link.

The ``mailto:`` address is ``JOURNEYMAN_UNSUBSCRIBE_MAILTO``, else ``unsubscribe@`` the
domain of the email channel's sender; without either, the header has the URL alone.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from email.utils import parseaddr
from typing import Any

import msgspec

from journeyman.domain.consent import PREFERENCES_PLACEHOLDER, UNSUBSCRIBE_PLACEHOLDER
from journeyman.domain.state import SendMessage
from journeyman.runtime.links import Links

__all__ = [
    "MAILTO_SETTING",
    "PREFERENCES_PATH",
    "PREFERENCES_PURPOSE",
    "UNSUBSCRIBE_PATH",
    "UNSUBSCRIBE_PURPOSE",
    "ConsentLinks",
]

UNSUBSCRIBE_PATH, UNSUBSCRIBE_PURPOSE = "/u", "unsubscribe"
PREFERENCES_PATH, PREFERENCES_PURPOSE = "/preferences", "preferences"
MAILTO_SETTING = "JOURNEYMAN_UNSUBSCRIBE_MAILTO"
_ESCAPED = frozenset({"html"})  # content whose links are HTML text


class ConsentLinks:
    """A ``Dispatcher.prepare`` step: the links in place of the placeholders, and the
    List-Unsubscribe headers on marketing email.

    ``links`` gives the process's current links (set when it starts); ``channels`` are
    its channels, whose email sender names the ``mailto:`` domain.
    """

    def __init__(
        self, links: Callable[[], Links], env: Mapping[str, str], channels: Mapping[str, Any]
    ) -> None:
        self.links = links
        self.env = env
        self.channels = channels

    def __call__(self, message: SendMessage) -> SendMessage:
        links = self.links()
        unsubscribe = links.url(UNSUBSCRIBE_PATH, UNSUBSCRIBE_PURPOSE, message.key)
        content = {
            key: self._fill(key, text, unsubscribe, message, links)
            for key, text in message.content.items()
        }
        headers = message.headers
        if message.channel == "email" and not message.transactional:
            headers = {**headers, **self.headers(unsubscribe, message.channel)}
        return msgspec.structs.replace(message, content=content, headers=headers)

    def _fill(
        self, key: str, text: str, unsubscribe: str, message: SendMessage, links: Links
    ) -> str:
        if UNSUBSCRIBE_PLACEHOLDER in text:
            link = html.escape(unsubscribe) if key in _ESCAPED else unsubscribe
            text = text.replace(UNSUBSCRIBE_PLACEHOLDER, link)
        if PREFERENCES_PLACEHOLDER in text:
            preferences = links.url(PREFERENCES_PATH, PREFERENCES_PURPOSE, message.profile_id)
            link = html.escape(preferences) if key in _ESCAPED else preferences
            text = text.replace(PREFERENCES_PLACEHOLDER, link)
        return text

    def headers(self, unsubscribe: str, channel: str) -> dict[str, str]:
        """The List-Unsubscribe headers for a message whose one-click URL is ``unsubscribe``."""
        targets = [f"<{unsubscribe}>"]
        mailto = self.mailto(channel)
        if mailto:
            token = unsubscribe.rsplit("/", 1)[1]
            targets.append(f"<mailto:{mailto}?subject=unsubscribe-{token}>")
        return {
            "List-Unsubscribe": ", ".join(targets),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def mailto(self, channel: str) -> str:
        """The address of the ``mailto:``: the setting, else unsubscribe@ the sender's domain."""
        address = parseaddr(self.env.get(MAILTO_SETTING, ""))[1]
        if "@" in address:
            return address
        sender = getattr(self.channels.get(channel), "sender", None)
        domain = parseaddr(sender)[1].rpartition("@")[2] if isinstance(sender, str) else ""
        return f"unsubscribe@{domain}" if domain else ""
