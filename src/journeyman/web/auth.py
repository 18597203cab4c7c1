"""Who may use the console: the login, the signed session cookie and CSRF tokens.

A session is a cookie holding the user's name, an expiry and a random token, signed with
HMAC-SHA256 under a key derived from the admin key: no server-side state, sessions
survive a restart, and changing the admin key ends every session. The cookie is HttpOnly
and SameSite=Strict. Every state-changing form carries a CSRF token derived from the
session's random token; a POST without the right one is refused before anything runs.
The login form itself has no session yet, so it uses a double-submit token: a random
value in a short-lived cookie that the form must repeat.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from journeyman.errors import JourneymanError

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "LoginLimit",
    "Session",
    "Sessions",
    "UsersError",
    "parse_users",
]

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


class LoginLimit:
    """At most ``attempts`` failed logins per client address in ``window`` seconds.

    Guessing the admin key stays hopeless anyway (it is long and random); this keeps a
    guesser from trying user passwords quickly. Kept in memory, per process.
    """

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


def _same(given: str, wanted: str) -> bool:
    return hmac.compare_digest(given.encode(), wanted.encode())
