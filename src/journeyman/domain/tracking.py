"""Open and click tracking for email: which links are tracked, rewriting them, machine opens.

At send time the HTML part of a marketing email has each tracked link replaced by a click
URL and gets a 1x1 open pixel (see :func:`rewrite`). The click URL's token names only the
message and the link's number; the original address stays in the stored message, and a
click finds it again with :func:`tracked_links`, the same extraction :func:`rewrite` used,
so link ``i`` is always the same link.

A tracked link is the ``href`` of an ``<a>`` element whose address is ``http://`` or
``https://`` and does not point at the deployment itself (an unsubscribe or preference
link stays as it is, as do ``mailto:``, ``tel:``, ``#anchors`` and anything unrendered).
Links in HTML comments are neither tracked nor counted.

:data:`PREFETCHERS` is the one list of mail proxies that fetch images without a person
opening anything; :func:`machine_open` reads it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable, Iterator

__all__ = [
    "PREFETCHERS",
    "machine_open",
    "prefetcher",
    "rewrite",
    "tracked_link",
    "tracked_links",
]

# A comment (skipped), or an <a> start tag's href value: double-quoted, single-quoted or bare.
_LINK = re.compile(
    r"<!--.*?-->"
    r"|<a\b[^>]*?\shref\s*=\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s\"'>]+))",
    re.IGNORECASE | re.DOTALL,
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)

#: Mail proxies that fetch every image of a message when it arrives or is previewed, so a
#: fetch of the open pixel by one of them says nothing about a person: each entry is a
#: fragment of the ``User-Agent`` they send (matched without regard to case), and what it is.
PREFETCHERS: tuple[tuple[str, str], ...] = (
    ("GoogleImageProxy", "Gmail's image proxy (ggpht.com)"),
    ("YahooMailProxy", "Yahoo Mail's image proxy"),
    ("Yahoo! Slurp", "Yahoo's crawler, also used for mail previews"),
    ("Microsoft Office", "Outlook desktop preview"),
    ("ms-office", "Outlook desktop preview"),
    ("Outlook-iOS", "Outlook for iOS prefetch"),
    ("Microsoft Exchange", "Exchange / Outlook.com safe links and previews"),
    ("BingPreview", "Outlook.com link and image preview"),
)
# Apple Mail Privacy Protection fetches through Apple's proxies with a bare browser agent:
# exactly "Mozilla/5.0" (no platform, no engine), which no person's mail client sends.
_APPLE_PROXY_AGENT = "mozilla/5.0"
_FRAGMENTS = tuple(fragment.lower() for fragment, _ in PREFETCHERS)


def _value(match: re.Match[str]) -> tuple[int, int, str] | None:
    """The span and the decoded address of an href match; None for a comment."""
    for group in ("dq", "sq", "bare"):
        value = match.group(group)
        if value is not None:
            start, end = match.span(group)
            return start, end, _unescaped(value).strip()
    return None


def _unescaped(value: str) -> str:
    """``html.unescape(value)``, quickly for the usual address (no entity, or ``&amp;``s)."""
    if "&" not in value:
        return value
    if value.count("&") == value.count("&amp;"):
        return value.replace("&amp;", "&")
    return html.unescape(value)


def _tracked(address: str, own: str) -> bool:
    lowered = address.lower()
    if not lowered.startswith(("http://", "https://")):
        return False
    return not (own and (address == own or address.startswith(own + "/")))


def _spans(text: str, own: str) -> Iterator[tuple[int, int, str]]:
    """Each tracked link of ``text``: where its href value is, and the address."""
    for match in _LINK.finditer(text):
        value = _value(match)
        if value is not None and _tracked(value[2], own):
            yield value


def tracked_links(text: str, own: str = "") -> list[str]:
    """The addresses of the tracked links of an HTML part, in order; ``own`` is the
    deployment's public URL, whose links are not tracked."""
    return [address for _, _, address in _spans(text, own)]


def tracked_link(text: str, index: int, own: str = "") -> str | None:
    """``tracked_links(text, own)[index]``, reading no further than that link; None if
    there are fewer."""
    found = next(itertools.islice(_spans(text, own), index, None), None)
    return found[2] if found is not None else None


def rewrite(text: str, click: Callable[[int], str], pixel: str, own: str = "") -> str:
    """``text`` with tracked link ``i`` pointing at ``click(i)``, and the open pixel
    (its ``src`` is ``pixel``) before ``</body>``, or at the end without one."""
    parts, last = [], 0
    for index, (start, end, _) in enumerate(_spans(text, own)):
        parts += [text[last:start], html.escape(click(index), quote=True)]
        last = end
    parts.append(text[last:])
    rewritten = "".join(parts)
    image = (
        f'<img src="{html.escape(pixel, quote=True)}" width="1" height="1" alt="" '
        'style="border:0;width:1px;height:1px">'
    )
    ends = list(_BODY_END.finditer(rewritten))
    if not ends:
        return rewritten + image
    at = ends[-1].start()
    return rewritten[:at] + image + rewritten[at:]


def prefetcher(user_agent: str) -> str | None:
    """The mail proxy (its :data:`PREFETCHERS` fragment, or ``"Apple Mail Privacy
    Protection"``) that a fetch with this ``User-Agent`` comes from, or None for a person."""
    lowered = user_agent.strip().lower()
    if lowered == _APPLE_PROXY_AGENT:
        return "Apple Mail Privacy Protection"
    for (fragment, _), lowered_fragment in zip(PREFETCHERS, _FRAGMENTS, strict=True):
        if lowered_fragment in lowered:
            return fragment
    return None


def machine_open(user_agent: str) -> bool:
    """Whether a fetch of the open pixel with this ``User-Agent`` comes from a mail proxy
    (see :data:`PREFETCHERS`), not from a person opening the message."""
    return prefetcher(user_agent) is not None
