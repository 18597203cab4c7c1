"""Action calls: rendered so that customer data stays data, and aimed only where allowed.

An action's ``url``, header values and ``body`` are Liquid templates. What the engine
renders is stored in the outbox; the runtime fills in ``${NAME}`` placeholders from the
environment at call time (so secrets are never stored) and sends the call. Three rules
keep profile and event data from steering a call:

- **Placeholders come from the document's text only.** Rendering goes through an
  :class:`~journeyman.domain.templates.Output` that tells the author's text from rendered
  values: in the stored text, a ``${NAME}`` written in the document stays as it is, and
  every other ``$`` (in a value, or in the author's text) is doubled. :func:`fill` reads
  ``$$`` back as ``$``, so no value, and no value beside the author's text, can ever form
  a placeholder.
- **Values in a URL are percent-encoded**: everything but letters, digits and ``-._~``,
  so a value is one path segment or one query value and never ``/``, ``?``, ``#``, ``&``,
  ``=``, ``+`` or ``%``; in the path, dots that could make a ``.`` or ``..`` segment
  (runs of dots, a dot that starts a segment) are ``%2E`` too.
- **Values in a JSON body are JSON-escaped**: when the action's ``Content-Type`` is JSON,
  a value is written as the inside of a JSON string (quotes, backslashes and control
  characters escaped), so one cannot close its string and add keys.
- **The scheme, host and port come from the document**: :func:`url_origin` refuses (at
  validate) a url whose ``scheme://host:port`` holds Liquid, and :func:`render_call`
  refuses a rendered url that does not start with the document's origin. The origin
  may be a placeholder (``${CRM_URL}/contacts/...``), which the operator's environment
  fills in.

Where calls go: loopback, private, link-local and other non-public addresses (IPv4 and
IPv6, IPv4-mapped ones included) are refused unless an ``allow`` list names them
(:class:`Allow`): ``allow: [127.0.0.1, "10.0.0.0/8", crm.internal]``, addresses,
networks or host names. The runtime checks every address a host name resolves to at
connect time; validation checks the addresses and ``localhost`` names written in
documents.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from journeyman.domain.templates import Output, Template
from journeyman.errors import JourneymanError

__all__ = [
    "Allow",
    "AllowError",
    "RenderedCall",
    "allowed_literal",
    "fill",
    "literal_target",
    "placeholders",
    "refusal",
    "render_call",
    "url_origin",
]

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A `$` of the author's text that does not start a placeholder.
_LONE_DOLLAR = re.compile(r"\$(?!\{[A-Za-z_][A-Za-z0-9_]*\})")
_DOT_RUN = re.compile(r"\.{2,}")
_FILLED = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.?")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# placeholders


def fill(text: str, value: Callable[[str], str]) -> str:
    """The stored text of a call with its placeholders filled in: ``$$`` is ``$``, and
    ``${NAME}`` is ``value(NAME)``."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return "$" if name is None else value(name)

    return _FILLED.sub(one, text)


def _escape_literal(text: str) -> str:
    return _LONE_DOLLAR.sub("$$", text)


class _TextOutput(Output):
    """Header values and bodies: placeholders only from the author's text."""

    def write(self, text: str) -> int:
        return super().write(text.replace("$", "$$"))

    def literal(self, text: str) -> int:
        return super().write(_escape_literal(text))


class _JsonOutput(_TextOutput):
    """JSON bodies: values escaped as the inside of a JSON string, so a quote or a
    backslash in a value cannot end the string it is written in and add keys."""

    def write(self, text: str) -> int:
        return super().write(json.dumps(text, ensure_ascii=False)[1:-1])


class _UrlOutput(Output):
    """URLs: values percent-encoded, placeholders only from the author's text."""

    def write(self, text: str) -> int:
        encoded = quote(text, safe="")
        if "." in encoded:
            encoded = self._dots(encoded)
        return super().write(encoded)

    def literal(self, text: str) -> int:
        return super().write(_escape_literal(text))

    def _dots(self, encoded: str) -> str:
        """In the path, encode dots that could make a ``.`` or ``..`` segment: runs of
        them, and one that starts a segment (or follows only dots)."""
        written = self.getvalue()
        if "?" in written or "#" in written:
            return encoded  # a dot means nothing in a query or fragment
        encoded = _DOT_RUN.sub(lambda run: "%2E" * len(run.group(0)), encoded)
        segment = written.rsplit("/", 1)[-1]
        if segment.strip(".") or not encoded.startswith("."):
            return encoded
        return "%2E" + encoded[1:]


# the origin of a url


def url_origin(source: str) -> tuple[str | None, str]:
    """The ``scheme://host:port`` written at the start of an action's url, or why not.

    Returns ``(origin, "")`` or ``(None, problem)``. The origin ends where the path, the
    query or the fragment starts; no Liquid may come before that point. A url may also
    start with a placeholder (``${CRM_URL}``) that the environment fills in.
    """
    cut = min((i for i in (source.find("{{"), source.find("{%")) if i >= 0), default=-1)
    written = source if cut < 0 else source[:cut]
    whole = cut < 0
    if written.startswith("${"):
        match = REFERENCE.match(written)
        if match is None:
            return None, "a placeholder at its start must be written ${NAME}"
        origin = match.group(0)
        rest = written[match.end() :]
        if rest[:1] in ("/", "?", "#") or (whole and not rest):
            return origin, ""
        return None, f"write a '/' after {origin}, before any Liquid"
    match = _ORIGIN.match(written)
    if match is None:
        return None, "must start with http:// or https:// and the host, written out"
    if match.group("scheme").lower() not in ("http", "https"):
        return None, f"must be an http:// or https:// URL, not {match.group('scheme')}://"
    end = match.end()
    if not whole and end == len(written):
        return None, (
            "the scheme, host and port must be written out, not rendered: Liquid may "
            "only come after the host, in the path, query or fragment"
        )
    if not match.group("authority"):
        return None, "needs a host after the scheme"
    return written[:end], ""


# where calls may go


def refusal(ip: IP) -> str | None:
    """What kind of address ``ip`` is, when calls to it need an ``allow`` entry."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved address"
    return None


class AllowError(JourneymanError, ValueError):
    """An ``allow`` list that cannot be read."""


@dataclass(frozen=True, slots=True)
class Allow:
    """The non-public addresses and host names an action or channel may call."""

    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, value: Any) -> Allow:
        """An ``allow`` value: a list of addresses, networks (CIDR) and host names."""
        if value is None:
            return cls()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise AllowError("must be a list of addresses, networks and host names")
        networks: list[Network] = []
        names: set[str] = set()
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise AllowError(f"{item!r} is not an address, network or host name")
            text = item.strip().strip("[]")
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if "/" in text or ":" in text or not _HOST_NAME.fullmatch(text):
                raise AllowError(
                    f"{item!r} is not an address (127.0.0.1), network (10.0.0.0/8) "
                    "or host name (crm.internal)"
                )
            names.add(text.lower().rstrip("."))
        return cls(tuple(networks), frozenset(names))

    def permits(self, host: str, ip: IP) -> bool:
        """Whether a call to ``host`` may connect to ``ip``."""
        if refusal(ip) is None or host.lower().rstrip(".") in self.names:
            return True
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net) for net in self.networks)


def literal_target(url: str) -> tuple[str, str] | None:
    """``(host, what it is)`` when ``url`` names a non-public host outright: an address
    of that kind, or ``localhost``. Host names are only known when they resolve."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return host, "a loopback name"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    what = refusal(ip)
    return (host, what) if what is not None else None


def allowed_literal(allow: Allow, host: str) -> bool:
    """Whether ``allow`` lets a call reach ``host`` as written (see :func:`literal_target`).

    A loopback name is allowed by its name, or by a loopback address it resolves to.
    """
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    return any(allow.permits(host, ip) for ip in addresses)


# rendering


@dataclass(frozen=True, slots=True)
class RenderedCall:
    url: str
    headers: dict[str, str]
    body: str | None


def render_call(
    url: Template,
    headers: Mapping[str, Template],
    body: Template | None,
    scope: Mapping[str, Any],
) -> RenderedCall | str:
    """The call's text as the outbox stores it, or why it cannot be made."""
    origin, problem = url_origin(url.source)
    if origin is None:
        return f"its url cannot be used: {problem}"
    rendered = url.render(scope, _UrlOutput())
    written = _escape_literal(origin)
    if not (rendered.startswith(written) and rendered[len(written) : len(written) + 1] in "/?#"):
        return f"the rendered url does not start with {origin}, as the action's url does"
    body_output = _JsonOutput() if _sends_json(headers) else _TextOutput()
    return RenderedCall(
        rendered,
        {name: value.render(scope, _TextOutput()) for name, value in headers.items()},
        body.render(scope, body_output) if body is not None else None,
    )


def _sends_json(headers: Mapping[str, Template]) -> bool:
    """Whether the action says its body is JSON (``Content-Type: application/json``, or
    any ``+json`` type)."""
    for name, value in headers.items():
        if name.lower() == "content-type":
            return "json" in value.source.lower()
    return False


def placeholders(texts: Iterable[str]) -> frozenset[str]:
    """The ``${NAME}`` placeholders written in ``texts``."""
    return frozenset(name for text in texts for name in REFERENCE.findall(text))
