"""Path parameters that match what they say, line breaks included.

Starlette ends each route's pattern with ``$``, which also matches just before a final
line break, and its ``path`` convertor (``.*``) stops at any line break. So
``/profiles/a%0A`` would show profile ``a``, ``/profiles/a%0Ab`` would match no route, and
``/dead-letters/5%0A`` would be letter 5. These convertors take the parameter whole:
``{x:anything}`` is any text, line breaks too (a profile id may hold one), and
``{x:digits}`` is ASCII digits and nothing after them.

Numbers in paths and queries are read with :func:`whole_number`: ASCII digits only
(``str.isdigit`` also takes ``²``, which ``int`` refuses). Any number above :data:`LARGEST`,
the largest id or version a store keeps, comes back as ``LARGEST + 1``: it names nothing,
and a store is never asked for it (SQLite and PostgreSQL refuse such a number, and Python
refuses to read one of more than 4300 digits).
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

__all__ = ["LARGEST", "whole_number"]

LARGEST = 2**63 - 1  # a 64-bit signed integer: every backend's integer keys


class _Anything(Convertor[str]):
    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _Digits(Convertor[int]):
    regex = "[0-9]+(?!\n)"

    def convert(self, value: str) -> int:
        return _bounded(value)

    def to_string(self, value: int) -> str:
        return str(value)


def whole_number(text: str) -> int | None:
    """``text`` as a whole number if it is one written in ASCII digits, else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    return _bounded(text)


def _bounded(digits: str) -> int:
    if len(digits.lstrip("0")) > len(str(LARGEST)):
        return LARGEST + 1
    return min(int(digits), LARGEST + 1)


register_url_convertor("anything", _Anything())
register_url_convertor("digits", _Digits())
