"""Routes that match the whole path, line breaks included, and numbers that fit a store.

Starlette ends each route's pattern with ``$``, which also matches just before a final
line break, and compiles it without ``re.DOTALL``, so its ``path`` convertor (``.*``)
stops at a line break. Then ``/v1/profiles%0A`` would be ``/v1/profiles``,
``/profiles/a%0A`` profile ``a``, and ``/profiles/a%0Ab`` no route at all (nor the
console's mount). :func:`exact` makes every pattern end at the very end of the path and
let ``.`` take line breaks: a profile id may hold one.

Numbers in paths (``{x:digits}``) and queries (:func:`whole_number`) are ASCII digits only
(``str.isdigit`` also takes ``²``, which ``int`` refuses). Any number above
:data:`LARGEST`, the largest id or version a store keeps, comes back as ``LARGEST + 1``:
it names nothing, and no store is asked for it (SQLite and PostgreSQL refuse such a
number, and Python refuses to read one of more than 4300 digits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import BaseRoute, Mount

__all__ = ["LARGEST", "exact", "whole_number"]

LARGEST = 2**63 - 1  # a 64-bit signed integer: every backend's integer keys


def exact(routes: Sequence[BaseRoute]) -> None:
    """Make each route (and those of each mount, in turn) match whole paths only."""
    for route in routes:
        pattern = getattr(route, "path_regex", None)
        if isinstance(pattern, re.Pattern) and pattern.pattern.endswith("$"):
            whole = pattern.pattern[:-1] + r"\Z"
            route.path_regex = re.compile(whole, pattern.flags | re.DOTALL)  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            exact(route.routes)


class _Digits(Convertor[int]):
    regex = "[0-9]+"

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


register_url_convertor("digits", _Digits())
