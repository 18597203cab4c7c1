"""Signed, opaque tokens for the links customers follow: clicks, opens, unsubscribe.

A token carries a few short text fields and a purpose, signed with the deployment's
secret (HMAC-SHA256, truncated to 128 bits). :func:`sign` makes one, :func:`verify` gives
the fields back only if the token was made with the same secret and purpose and was not
altered by one bit; anything else (forged, truncated, another purpose, not even base64)
is ``None``. Tokens say nothing readable: the fields are ids (a message key, a link's
index), never an address or a name, and are packed before they are encoded.

Pure: the secret is given, nothing is read from the clock or the environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import msgspec

__all__ = ["TOKEN_LIMIT", "sign", "verify"]

#: The longest token :func:`verify` reads; a longer one is refused unread.
TOKEN_LIMIT = 1024
_MAC_BYTES = 16
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[str])


def sign(secret: bytes, purpose: str, *fields: str) -> str:
    """A URL-safe token for ``fields``, valid only for ``purpose`` under ``secret``."""
    payload = _encoder.encode(list(fields))
    return _encoded(payload + _mac(secret, purpose, payload))


def verify(secret: bytes, purpose: str, token: str) -> tuple[str, ...] | None:
    """The fields of a token :func:`sign` made for ``purpose``, or None."""
    if not token or len(token) > TOKEN_LIMIT or not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) <= _MAC_BYTES or _encoded(raw) != token:
        return None  # too short, or spare bits set: one token, one text
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        return None
    try:
        return tuple(_decoder.decode(payload))
    except msgspec.DecodeError:  # signed by us, so never; kept for safety
        return None


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    message = purpose.encode() + b"\x00" + payload
    return hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_BYTES]
