"""Who may use the console: the login, the signed session cookie and CSRF tokens.

A session is a cookie holding the user's name, an expiry and a random token, signed with
HMAC-SHA256 under a key derived from the admin key: sessions survive a restart, and
changing the admin key ends every session. The cookie is HttpOnly and SameSite=Strict.
Logging out ends the session for good: its token is recorded in the database
(:class:`EndedSessions`), so a copy of the cookie is refused by every console process,
after a restart too, until it would have expired anyway. Every state-changing form
carries a CSRF token derived from the session's random token; a POST without the right
one is refused before anything runs. The login form itself has no session yet, so it
uses a double-submit token: a random value in a short-lived cookie that the form must
repeat.

Failed logins are limited per user name and client address (:class:`LoginThrottle`);
behind a reverse proxy, the client's address is taken from ``X-Forwarded-For`` only when
the proxy is trusted (:func:`client_address`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec

from journeyman.errors import JourneymanError

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "EndedSessions",
    "LoginLimit",
    "LoginThrottle",
    "Session",
    "Sessions",
    "UsersError",
    "client_address",
    "parse_networks",
    "parse_users",
]

log = logging.getLogger("journeyman.console")

SESSION_COOKIE = "jm_session"
LOGIN_COOKIE = "jm_login"
SESSION_SECONDS = 12 * 3600
ADMIN_USER = "admin"


class UsersError(JourneymanError):
    """``JOURNEYMAN_CONSOLE_USERS`` cannot be read."""


def parse_users(text: str | None) -> dict[str, str]:
    """``name:password,name:password`` into a map; empty or missing means no users."""
    users: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, colon, password = item.strip().partition(":")
        if not colon or not name or not password:
            raise UsersError(
                f"JOURNEYMAN_CONSOLE_USERS: {item.strip()!r} is not written name:password"
            )
        if name == ADMIN_USER:
            raise UsersError("JOURNEYMAN_CONSOLE_USERS: 'admin' is the admin key's user name")
        users[name] = password
    return users


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    expires: int  # Unix seconds
    token: str  # random; the CSRF token of this session derives from it


class _Payload(msgspec.Struct, array_like=True):
    user: str
    expires: int
    token: str


class Sessions:
    """Signs and checks session cookies and CSRF tokens."""

    def __init__(self, admin_key: str, users: Mapping[str, str]) -> None:
        self._admin_key = admin_key
        self._users = dict(users)
        self._secret = hmac.new(admin_key.encode(), b"journeyman console", "sha256").digest()

    def check_login(self, user: str, password: str) -> str | None:
        """The user name the login is for, or None. The admin key alone logs in as admin."""
        if not user or user == ADMIN_USER:
            return ADMIN_USER if _same(password, self._admin_key) else None
        wanted = self._users.get(user)
        return user if wanted is not None and _same(password, wanted) else None

    def new(self, user: str, now: float | None = None) -> str:
        """A signed cookie value for a fresh session of ``user``."""
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        payload = msgspec.json.encode(_Payload(user, expires, secrets.token_urlsafe(16)))
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, if its signature is right and it has not expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        if not _same(signature, self._sign(body)):
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            payload = msgspec.json.decode(raw, type=_Payload)
        except (ValueError, msgspec.DecodeError):
            return None
        if payload.expires < (time.time() if now is None else now):
            return None
        if payload.user != ADMIN_USER and payload.user not in self._users:
            return None  # a user removed from the setting is logged out
        return Session(payload.user, payload.expires, payload.token)

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.token}")

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return given is not None and _same(given, self.csrf(session))

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._secret, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class SettingsStore(Protocol):
    """The part of a store that keeps ended sessions."""

    async def get_setting(self, key: str) -> str | None: ...

    async def set_setting(self, key: str, value: str) -> None: ...


class EndedSessions:
    """Sessions ended by a logout, kept in the store so that every console process, and
    every restart, refuses their cookies.

    Each user has one setting, ``console_ended:<user>``: a JSON map from session token to
    the session's expiry, from which expired sessions are dropped at each logout. A
    process reads it again at most every ``cache_seconds``, so a logout in one process
    reaches the others within that time; in the process that logged out, at once.
    """

    def __init__(
        self,
        store: SettingsStore,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._read: dict[str, tuple[float, dict[str, int]]] = {}  # user -> (when, ended)
        self._here: dict[str, int] = {}  # ended by this process: kept even if not stored

    async def end(self, session: Session) -> None:
        """End ``session``; raises what the store raised if it could not be recorded
        (it is refused by this process all the same)."""
        self._here[session.token] = session.expires
        now = self.clock()
        ended = {
            token: expires
            for token, expires in (await self._fetch(session.user)).items()
            if expires >= now
        }
        ended[session.token] = session.expires
        await self.store.set_setting(_ended_key(session.user), json.dumps(ended))
        self._read[session.user] = (time.monotonic(), ended)

    async def ended(self, session: Session) -> bool:
        if session.token in self._here:
            return True
        cached = self._read.get(session.user)
        if cached is None or time.monotonic() - cached[0] > self.cache_seconds:
            try:
                cached = (time.monotonic(), await self._fetch(session.user))
            except Exception:
                # The store is unreachable: the pages will say so; go by what was read last.
                log.warning("cannot read the ended sessions of %r", session.user, exc_info=True)
                return cached is not None and session.token in cached[1]
            self._read[session.user] = cached
        return session.token in cached[1]

    async def _fetch(self, user: str) -> dict[str, int]:
        text = await self.store.get_setting(_ended_key(user))
        try:
            found = json.loads(text) if text else {}
        except ValueError:
            return {}
        if not isinstance(found, dict):
            return {}
        return {str(k): v for k, v in found.items() if isinstance(v, int)}


def _ended_key(user: str) -> str:
    return f"console_ended:{user}"


class LoginLimit:
    """At most ``attempts`` failed logins per key (such as a client address) in ``window``
    seconds. Kept in memory, per process."""

    def __init__(self, attempts: int = 10, window: float = 300.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def allowed(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._failures.get(client, []) if t > now - self.window]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        return len(recent) < self.attempts

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._failures) > 10_000:  # many addresses: forget the ones out of the window
            stale = [c for c, times in self._failures.items() if times[-1] <= now - self.window]
            for gone in stale:
                del self._failures[gone]
        self._failures.setdefault(client, []).append(now)


class LoginThrottle:
    """Failed logins, limited per user name from one client address, and per address.

    Guessing the admin key stays hopeless anyway (it is long and random); this keeps a
    guesser from trying user passwords quickly. Someone guessing one user's password is
    stopped after ``per_user`` failures without locking out the other users at the same
    address (an office's NAT, a proxy that is not trusted); ``per_address``, much higher,
    bounds guessing across many names.
    """

    def __init__(self, per_user: int = 10, per_address: int = 100, window: float = 300.0) -> None:
        self.users = LoginLimit(per_user, window)
        self.addresses = LoginLimit(per_address, window)

    def allowed(self, user: str, address: str, now: float | None = None) -> bool:
        return self.users.allowed(_pair(user, address), now) and self.addresses.allowed(
            address, now
        )

    def failed(self, user: str, address: str, now: float | None = None) -> None:
        self.users.failed(_pair(user, address), now)
        self.addresses.failed(address, now)


def _pair(user: str, address: str) -> str:
    # The name as typed, cut short: a long one must not make a large key.
    return f"{address} {(user.strip() or ADMIN_USER)[:64]}"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and networks (``10.0.0.1``, ``10.0.0.0/8``, ``::1``), each item one or a
    comma-separated list; raises ValueError naming the one that is neither."""
    found: list[Network] = []
    for item in items:
        for text in item.split(","):
            if not text.strip():
                continue
            try:
                found.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"{text.strip()!r} is not an IP address or network (such as 10.0.0.0/8)"
                ) from None
    return tuple(found)


def client_address(peer: str, forwarded_for: str | None, trusted: Iterable[Network]) -> str:
    """The address of the client a request is from.

    That is the peer's address, unless the peer is a trusted proxy: then the nearest
    address in ``X-Forwarded-For`` (read from the right, as each proxy appends the address
    it got the request from) that is not a trusted proxy itself. A client's own
    ``X-Forwarded-For`` is never believed: its entries are left of the ones trusted
    proxies added.
    """
    networks = tuple(trusted)
    if not networks or not forwarded_for or not _within(peer, networks):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if _address(hop) is None:
            break  # not an address: not written by a proxy we trust
        client = hop
        if not _within(hop, networks):
            break
    return client


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(text: str, networks: tuple[Network, ...]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in networks)


def _same(given: str, wanted: str) -> bool:
    return hmac.compare_digest(given.encode(), wanted.encode())
