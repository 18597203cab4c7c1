"""The expression language of ``when:``, ``until:`` and ``expr:`` fields.

An expression is compiled once, when a journey is published, and evaluated against a
scope with the keys ``profile``, ``account``, ``event``, ``entry``, ``journey`` and ``now``.
Evaluation never fails: whatever cannot be computed is ``null``. Examples::

    event.plan != "internal"
    profile.plan == "pro" and event.total > 100 and "vip" in profile.tags
    event.cart_id == entry.cart_id
    entry.appointment_at - duration("1d")
    now - entry.timestamp > duration("2d")

**Names.** An expression starts from ``profile``, ``account`` (the traits of the
profile's account, and its ``id``; empty when it has none), ``event`` (the triggering
event), ``entry`` (the event that started the instance), ``journey``, ``now`` (the
current time) or ``now_local`` (the current time on the clock of the profile's time zone:
its ``timezone`` trait, else the workspace's). Any other name is an error. A name missing
from the scope is ``null``.

**Field access.** ``a.b.c`` reads keys; ``a["key with spaces"]`` reads any key, even
one that starts with ``_``; ``list[0]`` reads an item, ``list[-1]`` the last one;
``a[expr]`` reads a key if ``expr`` is a string and an item if it is an integer. Access is
null-safe: a missing key, an index out of range, or access on ``null`` or on anything
that is not an object or a list gives ``null``. A name after a dot may be any word,
keywords included (``event.in``), but names that start with ``_`` are refused.

**Literals.** Integers (``42``), decimals (``1.5``), strings in double or single quotes
with the escapes ``\\"``, ``\\'``, ``\\\\``, ``\\n`` and ``\\t``, ``true``, ``false``,
``null`` and lists (``["pro", "team"]``).

**Operators**, loosest first: ``or``; ``and``; ``not``; the comparisons
``== != < <= > >= in not in contains``; ``+ -``; ``* / %``; unary ``-``; field access and
calls. Parentheses group. Comparisons do not chain: write ``a < b and b < c``.

**Truth.** ``null``, ``false``, ``0``, ``""``, a zero duration and empty lists and
objects are false; everything else is true. ``and``, ``or`` and ``not`` give ``true`` or ``false``;
``and`` and ``or`` stop as soon as the answer is known.

**Comparisons** never fail. ``==`` compares values, lists and objects item by item.
Integers and decimals mix (``1 == 1.0``); a boolean is not a number (``true == 1`` is
false). ``!=`` is the opposite of ``==``. ``< <= > >=`` order two numbers, two strings,
two timestamps or two durations; any other pair, ``null`` included, is false. Where a
timestamp meets a string, the string is read as an ISO 8601 timestamp (no offset means
UTC); if it is not one, the comparison is false (and ``!=`` true). Two strings always
compare as strings. A date counts as midnight UTC.

**Membership.** ``x in y`` is true when ``y`` is a list with an item equal to ``x`` (as
by ``==``), a string that contains the string ``x``, or an object with the string key
``x``; otherwise false. ``y contains x`` is ``x in y``; ``x not in y`` is ``not (x in y)``.

**Arithmetic** never fails. ``+ - * / %`` work on numbers (``7 / 2`` is ``3.5``; ``%``
takes the sign of the divisor). ``timestamp ± duration`` is a timestamp, ``timestamp -
timestamp`` and ``duration ± duration`` are durations, ``duration * number``, ``number *
duration`` and ``duration / number`` scale a duration, ``string + string`` joins. A string
next to a timestamp or a duration is read as an ISO 8601 timestamp, so
``entry.appointment_at - duration("1d")`` works on text. ``-x`` negates a number or a
duration. Anything else (another mix of types, ``null``, division by zero, overflow)
gives ``null``. Timestamps computed here are in UTC.

**Functions** are called by name only (``a.b()`` is an error, and so is an unknown
function or a wrong number of arguments), and give ``null`` for arguments they do not
take. :data:`FUNCTIONS` describes each: ``duration(text)``, ``timestamp(value)``,
``lower(text)``, ``upper(text)``, ``len(value)``, ``abs(number)``, ``min(a, b)``,
``max(a, b)``, ``round(number)``, ``exists(value)``, ``days(number)``, ``hours(number)``,
``minutes(number)``; and over local time, ``hour(time)``, ``weekday(time)``,
``date(time)`` and ``is_anniversary(date)`` (which reads ``now_local``). A literal
argument of ``duration`` or ``timestamp`` that cannot be
read is an error at compile time; a bad value at run time gives ``null``.

**History functions** read what the profile did, from aggregates it keeps (see
:mod:`journeyman.domain.history`): ``count(event, window)``, ``sum(event, property,
window)``, ``last(event)`` (the last such event: ``last("order_completed").properties.total``),
``first_seen(event)``, ``days_since(event)`` and ``in_segment(segment)``;
:data:`HISTORY_FUNCTIONS` describes each. Their arguments are text literals, so that what
each profile keeps is known when the workspace is published; a window is a whole number of
days, from 1d to 400d.

**Limits.** At most 2,000 characters and 50 levels of nesting. There are no loops,
no exponentiation and no string repetition: evaluation time is bounded by the length of
the expression and the size of the data it reads.

**Errors.** :class:`ExpressionError` has a message and the 1-based column of the
problem in the source: an unknown name or function (with a did-you-mean), an unexpected
token and what was expected, an unterminated string, a chained comparison, ``=`` for
``==``, ``&&`` or ``||`` for ``and`` or ``or``, input after a complete expression.
"""

from __future__ import annotations

import calendar
import difflib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from journeyman.domain import history as _history
from journeyman.domain.times import parse_duration, parse_timestamp
from journeyman.errors import JourneymanError

__all__ = [
    "FUNCTIONS",
    "HISTORY_FUNCTIONS",
    "Expression",
    "ExpressionError",
    "compile_expression",
    "month_and_day",
]

_MAX_LENGTH = 2000
_MAX_DEPTH = 50

_ROOTS = ("profile", "account", "event", "entry", "journey", "now", "now_local")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_KEYWORDS = frozenset({"and", "or", "not", "in", "contains", *_LITERALS})
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains"})
# Binding powers of the binary operators: the higher, the tighter.
_POWER = {"or": 1, "and": 2, **dict.fromkeys(_COMPARISONS, 4), "+": 5, "-": 5, "*": 6, "/": 6}
_POWER["%"] = 6
_NOT_POWER, _NEG_POWER = 3, 7  # of the prefix operators


class ExpressionError(JourneymanError):
    """An expression that cannot be compiled, with the 1-based column of the problem."""

    def __init__(self, message: str, column: int, source: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column
        self.source = source

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling replays args, which do not match this constructor.
        return (type(self), (self.message, self.column, self.source))


# --- runtime: the helpers compiled expressions call ------------------------------------

# One word per kind of value, so that each rule below is a small set of allowed kinds.
_KIND_OF_TYPE: dict[type, str] = dict(
    zip(
        (int, float, str, bool, type(None), timedelta, datetime, date, list, tuple, dict),
        ["num", "num", "str", "bool", "null", "span", "time", "time", "list", "list", "map"],
        strict=True,
    )
)
# Subclasses (an OrderedDict, an IntEnum) behave like their base; bool cannot be subclassed.
_KIND_OF_CLASS = [(Mapping if t is dict else t, k) for t, k in _KIND_OF_TYPE.items() if k != "bool"]
_PLAIN = frozenset({str, int, float, bool, type(None), timedelta})  # == is ours on equal types
_TIME_PAIRS = frozenset({("time", "time"), ("time", "str"), ("str", "time")})


def _kind(value: object) -> str:
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is not None:
        return kind
    return next((kind for cls, kind in _KIND_OF_CLASS if isinstance(value, cls)), "other")


def _as_time(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError):  # TimeFormatError is a ValueError
        return None


def _times(a: Any, b: Any) -> tuple[datetime, datetime] | None:
    first, second = _as_time(a), _as_time(b)
    return None if first is None or second is None else (first, second)


def _local_time(value: Any) -> datetime | None:
    """A timestamp on its own clock (``now_local`` keeps the profile's zone); text as UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return _as_time(value) if isinstance(value, str) else None


_MONTH_DAY = re.compile(r"-?-?(\d{2})-(\d{2})")


def _day_of(value: Any) -> date | None:
    """The calendar date of a timestamp on its own clock, or of a date text."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    found = _local_time(value)
    return None if found is None else found.date()


def _month_day(value: Any) -> tuple[int, int] | None:
    if isinstance(value, str) and (match := _MONTH_DAY.fullmatch(value.strip())):
        month, day = int(match[1]), int(match[2])
        try:
            date(2000, month, day)  # a leap year: 29 February is a day
        except ValueError:
            return None
        return month, day
    found = _day_of(value)
    return None if found is None else (found.month, found.day)


def month_and_day(value: Any) -> tuple[int, int] | None:
    """The (month, day) of a date as ``is_anniversary`` reads it, or None."""
    return _month_day(value)


def _anniversary(value: Any, now_local: Any) -> bool | None:
    """Whether today (the date of ``now_local``) has the month and day of ``value``."""
    if not isinstance(now_local, datetime):
        return None
    found = _month_day(value)
    if found is None:
        return None
    today = now_local.date()
    month, day = found
    if (month, day) == (2, 29) and not calendar.isleap(today.year):
        day = 28
    return (today.month, today.day) == (month, day)


def _field(value: Any, key: object) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _index(value: Any, index: int) -> Any:
    kind = _kind(value)
    if kind == "list":
        return value[index] if -len(value) <= index < len(value) else None
    return _field(value, index) if kind == "map" else None


def _item(value: Any, key: Any) -> Any:
    if _kind(key) == "str":
        return _field(value, key)
    return _index(value, key) if isinstance(key, int) and _kind(key) == "num" else None


def _eq(a: Any, b: Any) -> bool:
    if type(a) is type(b) and type(a) in _PLAIN:
        return bool(a == b)
    ka, kb = _kind(a), _kind(b)
    if (ka, kb) in _TIME_PAIRS:
        pair = _times(a, b)
        return pair is not None and pair[0] == pair[1]
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(map(_eq, a, b))
    if ka == "map":
        return bool(a.keys() == b.keys()) and all(_eq(a[key], b[key]) for key in a)
    return bool(a == b)


def _ordered(a: Any, b: Any) -> tuple[Any, Any] | None:
    """``a`` and ``b`` made comparable (timestamps in UTC), or None if they are not."""
    ka, kb = _kind(a), _kind(b)
    if ka == kb and ka in ("num", "str", "span"):
        return a, b
    return _times(a, b) if (ka, kb) in _TIME_PAIRS else None


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        pair = _ordered(a, b)
        return pair is not None and compare(*pair)

    return apply


def _member(item: Any, items: Iterable[Any]) -> bool:
    if type(item) is str:
        # Exact text matches run at C speed; of the rest, only a timestamp can equal text.
        return item in items or any(type(c) is not str and _eq(item, c) for c in items)
    return any(_eq(item, candidate) for candidate in items)


def _in(item: Any, container: Any) -> bool:
    kind = _kind(container)
    if kind == "list":
        return _member(item, container)
    return kind in ("str", "map") and _kind(item) == "str" and item in container


# Each operator lists the pairs of kinds it accepts.
_ARITHMETIC: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "+": (operator.add, "num num, span span, time span, span time, str str"),
    "-": (operator.sub, "num num, span span, time span, time time"),
    "*": (operator.mul, "num num, span num, num span"),
    "/": (operator.truediv, "num num, span num"),
    "%": (operator.mod, "num num"),
}


def _arithmetic(symbol: str) -> Callable[[Any, Any], Any]:
    compute, pairs = _ARITHMETIC[symbol]
    allowed = frozenset(tuple(pair.split()) for pair in pairs.split(","))

    def apply(a: Any, b: Any) -> Any:
        ka, kb = _kind(a), _kind(b)
        if ka == "str" and kb in ("time", "span"):
            ka = "time"
        elif kb == "str" and ka in ("time", "span"):
            kb = "time"
        if (ka, kb) not in allowed:
            return None
        # Normalising to UTC also lets naive and aware datetimes combine.
        if ka == "time" and (a := _as_time(a)) is None:
            return None
        if kb == "time" and (b := _as_time(b)) is None:
            return None
        try:
            return compute(a, b)
        except (ArithmeticError, ValueError):  # division by zero, overflow, NaN
            return None

    return apply


def _guarded(kinds: str, compute: Callable[..., Any]) -> Callable[..., Any]:
    """``compute`` for arguments of the given kinds, else null; its errors become null."""
    accepted = frozenset(kinds.split())

    def apply(*values: Any) -> Any:
        if not all(_kind(value) in accepted for value in values):
            return None
        try:
            return compute(*values)
        except (ArithmeticError, ValueError):  # overflow, NaN, unreadable text
            return None

    return apply


def _pick(choose: Callable[[Iterable[Any]], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        pair = _ordered(a, b)
        return None if pair is None else choose(pair)

    return apply


FUNCTIONS: Mapping[str, str] = MappingProxyType(
    {
        "duration": "duration(text): the duration written as 30s, 20m, 3h, 2d, 1w or 1h30m",
        "timestamp": "timestamp(value): an ISO 8601 text or a timestamp, as a UTC timestamp",
        "lower": "lower(text): the text in lower case",
        "upper": "upper(text): the text in upper case",
        "len": "len(value): the length of a text, a list or an object",
        "abs": "abs(number): the absolute value of a number or a duration",
        "min": "min(a, b): the smaller of two numbers, texts, timestamps or durations",
        "max": "max(a, b): the larger of two numbers, texts, timestamps or durations",
        "round": "round(number): the nearest integer, halves to even (round(2.5) is 2)",
        "exists": "exists(value): true unless the value is null",
        "days": "days(number): a duration of that many days (days(1.5) is 36 hours)",
        "hours": "hours(number): a duration of that many hours",
        "minutes": "minutes(number): a duration of that many minutes",
        "hour": "hour(time): the hour, 0 to 23, of a timestamp on its own clock "
        "(hour(now_local) is the profile's local hour; a text is read as UTC)",
        "weekday": "weekday(time): the day of the week of a timestamp on its own clock, "
        "1 for Monday to 7 for Sunday",
        "date": "date(time): the calendar date of a timestamp on its own clock, as text "
        'such as "2026-12-24"; a date text as it is',
        "is_anniversary": "is_anniversary(date): whether today, in the profile's time zone, "
        "has the month and day of the date (a date text, --MM-DD, or a timestamp); "
        "29 February falls on 28 February in other years",
    }
)
_FUNCTION_HELPERS: dict[str, Callable[..., Any]] = {
    "duration": _guarded("str span", lambda v: v if type(v) is timedelta else parse_duration(v)),
    "timestamp": _guarded("str time", parse_timestamp),
    "lower": _guarded("str", str.lower),
    "upper": _guarded("str", str.upper),
    "len": _guarded("str list map", len),
    "abs": _guarded("num span", abs),
    "min": _pick(min),
    "max": _pick(max),
    "round": _guarded("num", round),
    "exists": lambda value: value is not None,
    "days": _guarded("num", lambda n: timedelta(days=n)),
    "hours": _guarded("num", lambda n: timedelta(hours=n)),
    "minutes": _guarded("num", lambda n: timedelta(minutes=n)),
    "hour": lambda value: None if (t := _local_time(value)) is None else t.hour,
    "weekday": lambda value: None if (t := _local_time(value)) is None else t.isoweekday(),
    "date": lambda value: None if (d := _day_of(value)) is None else d.isoformat(),
    "is_anniversary": lambda value, now_local: _anniversary(value, now_local),
}
# Functions that also read the scope: the profile's local time, given as their last argument.
_READS_LOCAL_TIME = frozenset({"is_anniversary"})
# Read from the documented signatures, so that the docs and the parser cannot disagree.
_ARITY = {name: FUNCTIONS[name].count(",", 0, FUNCTIONS[name].index(")")) + 1 for name in FUNCTIONS}

_neg = _guarded("num span", operator.neg)
_HELPERS: dict[str, tuple[str, Callable[..., Any]]] = {
    **{symbol: (f"_a{i}", _arithmetic(symbol)) for i, symbol in enumerate(_ARITHMETIC)},
    "<": ("_lt", _ordering(operator.lt)),
    "<=": ("_le", _ordering(operator.le)),
    ">": ("_gt", _ordering(operator.gt)),
    ">=": ("_ge", _ordering(operator.ge)),
}
# The only globals a compiled expression sees; its builtins are empty.
_RUNTIME: dict[str, Any] = {
    "__builtins__": {},
    **{"_type": type, "_dict": dict, "_str": str, "_neg": _neg},
    **{"_NUM": frozenset({int, float}), "_CONTAINERS": frozenset({list, tuple, dict, str})},
    **{helper.__name__: helper for helper in (_field, _index, _item, _eq, _in)},
    **dict(_HELPERS.values()),
    **{f"_fn_{name}": helper for name, helper in _FUNCTION_HELPERS.items()},
}


# --- tokenizer -------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # number, string, name, op or end
    text: str
    value: Any
    column: int


_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<number>[0-9]+(?:\.[0-9]+)?)|(?P<name>[^\W\d]\w*)"
    r"|(?P<op>==|!=|<=|>=|<>|&&|\|\||[-+*/%<>()\[\],.=!&|])|(?P<quote>[\"'])"
)
_MISTAKES = {
    "=": "use '==' to compare; '=' is not an operator",
    "<>": "use '!=' for 'not equal'",
    **{op: f"use 'and' instead of '{op}'" for op in ("&&", "&")},
    **{op: f"use 'or' instead of '{op}'" for op in ("||", "|")},
    "!": "use 'not' instead of '!'",
}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise ExpressionError(
                f"unexpected character {source[position]!r}", position + 1, source
            )
        kind, text, column = match.lastgroup or "", match.group(), position + 1
        position = match.end()
        if kind == "quote":
            value, position = _read_string(source, column - 1)
            tokens.append(_Token("string", source[column - 1 : position], value, column))
        elif kind == "op" and text in _MISTAKES:
            raise ExpressionError(_MISTAKES[text], column, source)
        elif kind == "number":
            tokens.append(_Token(kind, text, float(text) if "." in text else int(text), column))
        elif kind != "space":
            tokens.append(_Token(kind, text, text, column))
    tokens.append(_Token("end", "", None, len(source) + 1))
    return tokens


def _read_string(source: str, start: int) -> tuple[str, int]:
    """The text of the string literal that opens at ``start``, and the position after it."""
    quote, chars, position = source[start], list[str](), start + 1
    while position < len(source):
        char = source[position]
        if char == quote:
            return "".join(chars), position + 1
        if char == "\\" and position + 1 < len(source):
            position += 1
            if source[position] not in _ESCAPES:
                message = f"unknown escape '\\{source[position]}'; use \\\", \\', \\\\, \\n or \\t"
                raise ExpressionError(message, position, source)
            char = _ESCAPES[source[position]]
        chars.append(char)
        position += 1
    raise ExpressionError(f"unterminated string: no closing {quote}", start + 1, source)


# --- parser ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    kind: str  # const root field index item list call not neg and or cmp arith
    column: int
    value: Any = None
    args: tuple[_Node, ...] = ()
    depth: int = 1


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    return f"a string {token.text}" if token.kind == "string" else repr(token.text)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


_BAD_LITERAL = {
    "duration": "is not a duration such as 30s, 20m, 3h, 2d, 1w or 1h30m",
    "timestamp": "is not an ISO 8601 timestamp such as 2026-01-05T09:30:00Z",
}


class _Parser:
    """Precedence climbing (Pratt) over the token list."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.position = 0
        self.nesting = 0

    def error(self, message: str, column: int) -> ExpressionError:
        return ExpressionError(message, column, self.source)

    @property
    def peek(self) -> _Token:
        return self.tokens[self.position]

    def advance(self) -> _Token:
        self.position += 1
        return self.tokens[self.position - 1]

    def at(self, kind: str, *texts: str) -> bool:
        return self.peek.kind == kind and self.peek.text in texts

    def expect(self, text: str, expected: str) -> None:
        if not self.at("op", text):
            raise self.error(f"expected {expected}, found {_describe(self.peek)}", self.peek.column)
        self.advance()

    def node(
        self, kind: str, column: int, value: Any = None, args: tuple[_Node, ...] = ()
    ) -> _Node:
        if kind in ("and", "or"):  # kept flat, so that a long list of conditions does not nest
            args = tuple(part for arg in args for part in (arg.args if arg.kind == kind else [arg]))
        depth = 1 + max((arg.depth for arg in args), default=0)
        if depth > _MAX_DEPTH:
            raise self.error(f"the expression nests more than {_MAX_DEPTH} levels deep", column)
        return _fold(_Node(kind, column, value, args, depth))

    def parse(self) -> _Node:
        tree = self.expression()
        token = self.peek
        if token.kind != "end":
            hint = "; keywords are lower case" if token.text.lower() in _KEYWORDS else ""
            message = f"unexpected {_describe(token)} after a complete expression; expected an"
            raise self.error(f"{message} operator such as 'and', or the end{hint}", token.column)
        return tree

    def expression(self, power: int = 0) -> _Node:
        """The longest expression whose operators all bind more tightly than ``power``."""
        self.nesting += 1  # node depth alone misses "((((x))))" and "not not not x"
        if self.nesting > _MAX_DEPTH:
            message = f"the expression nests more than {_MAX_DEPTH} levels deep"
            raise self.error(message, self.peek.column)
        tree, compared = self.prefix(power), False
        while (symbol := self.binary_operator()) is not None and _POWER[symbol] > power:
            if compared and symbol in _COMPARISONS:
                message = "comparisons cannot be chained; write 'a < b and b < c'"
                raise self.error(message, self.peek.column)
            column = self.advance().column
            if symbol == "not in":
                self.advance()
            right = self.expression(_POWER[symbol])
            compared = symbol in _COMPARISONS
            kind = "cmp" if compared else "arith" if symbol in _ARITHMETIC else symbol
            tree = self.node(kind, column, symbol, (tree, right))
        self.nesting -= 1
        return tree

    def binary_operator(self) -> str | None:
        token = self.peek
        if token.kind in ("op", "name") and token.text in _POWER:
            return token.text
        if token.kind == "name" and token.text == "not":  # never the last token, "end" is
            following = self.tokens[self.position + 1]
            return "not in" if (following.kind, following.text) == ("name", "in") else None
        return None

    def prefix(self, power: int) -> _Node:
        if self.at("op", "-"):
            column = self.advance().column
            return self.node("neg", column, None, (self.expression(_NEG_POWER),))
        if self.at("name", "not") and power <= _NOT_POWER:
            column = self.advance().column
            return self.node("not", column, None, (self.expression(_NOT_POWER),))
        return self.postfix()

    def postfix(self) -> _Node:
        start = self.peek.column
        tree = self.primary()
        while self.at("op", ".", "[", "("):
            token = self.advance()
            if token.text == ".":
                tree = self.node("field", self.peek.column, self.name("a field name"), (tree,))
            elif token.text == "[":
                tree = self.subscript(tree, token.column)
            else:
                text = self.source[start - 1 : token.column - 1].strip()
                message = f"{text!r} cannot be called; only functions such as lower(...) can"
                raise self.error(message, token.column)
        return tree

    def name(self, expected: str) -> str:
        token = self.advance()
        if token.kind != "name":
            raise self.error(f"expected {expected}, found {_describe(token)}", token.column)
        if token.text.startswith("_"):
            raise self.error(f"names cannot start with '_': {token.text!r}", token.column)
        return token.text

    def subscript(self, tree: _Node, column: int) -> _Node:
        key = self.expression()
        self.expect("]", "']'")
        if key.kind == "const" and type(key.value) is str:
            return self.node("field", key.column, key.value, (tree,))
        if key.kind == "const" and type(key.value) is int:
            return self.node("index", key.column, key.value, (tree,))
        return self.node("item", column, args=(tree, key))

    def primary(self) -> _Node:
        token = self.peek
        if token.kind in ("number", "string"):
            return self.node("const", self.advance().column, token.value)
        if token.kind == "name" and token.text in _LITERALS:
            return self.node("const", self.advance().column, _LITERALS[token.text])
        if token.kind == "name" and token.text not in _KEYWORDS:
            name = self.name("a name")
            return self.call(name, token.column) if self.at("op", "(") else self.root(token)
        if self.at("op", "("):
            self.advance()
            tree = self.expression()
            self.expect(")", "')'")
            return tree
        if self.at("op", "["):
            return self.node("list", self.advance().column, args=tuple(self.arguments("]")))
        raise self.error(f"expected an operand, found {_describe(token)}", token.column)

    def root(self, token: _Token) -> _Node:
        name = token.text
        if name in _ROOTS:
            return self.node("root", token.column, name)
        if name in FUNCTIONS:
            message = f"{name!r} is a function; call it as {name}(...)"
        elif name.lower() in _LITERALS or name == "None":
            message = f"unknown name {name!r}; write {name.lower().replace('none', 'null')}"
        else:
            message = f"unknown name {name!r}{_suggest(name, _ROOTS)}; an expression starts"
            message += " from " + ", ".join(_ROOTS)
        raise self.error(message, token.column)

    def arguments(self, closing: str) -> list[_Node]:
        items: list[_Node] = []
        while not self.at("op", closing):
            items.append(self.expression())
            if not self.at("op", ","):
                break
            self.advance()
        self.expect(closing, f"',' or '{closing}'")
        return items

    def call(self, name: str, column: int) -> _Node:
        if name in _ROOTS:
            raise self.error(f"{name!r} cannot be called; it is not a function", column)
        if name in HISTORY_FUNCTIONS:
            return self.history_call(name, column)
        if name not in FUNCTIONS:
            known = (*FUNCTIONS, *HISTORY_FUNCTIONS)
            message = f"unknown function {name!r}{_suggest(name, known)}"
            raise self.error(f"{message}; the functions are {', '.join(known)}", column)
        self.advance()
        args, arity = tuple(self.arguments(")")), _ARITY[name]
        if len(args) != arity:
            count = f"{arity} argument{'s' * (arity > 1)}"
            raise self.error(f"{name}() takes {count}, got {len(args)}", column)
        first = args[0]
        literal = name in _BAD_LITERAL and first.kind == "const"
        if literal and _FUNCTION_HELPERS[name](first.value) is None:
            raise self.error(f"{first.value!r} {_BAD_LITERAL[name]}", first.column)
        return self.node("call", column, name, args)

    def history_call(self, name: str, column: int) -> _Node:
        """A history function: each argument a text literal, read now (see
        :func:`_history_arguments`)."""
        self.advance()
        args, arity = tuple(self.arguments(")")), _HISTORY_ARITY[name]
        if len(args) != arity:
            count = f"{arity} argument{'s' * (arity > 1)}"
            raise self.error(f"{name}() takes {count}, got {len(args)}", column)
        values = _history_arguments(self, name, args)
        return self.node("history", column, (name, *values))


def _fold(node: _Node) -> _Node:
    """Computes operations on constants once, at compile time (``days(2)``, ``-1``)."""
    if node.kind not in ("neg", "arith", "call") or any(a.kind != "const" for a in node.args):
        return node
    if node.kind == "call" and node.value in _READS_LOCAL_TIME:
        return node
    if node.kind == "call":
        helper = _FUNCTION_HELPERS[node.value]
    else:
        helper = _HELPERS[node.value][1] if node.kind == "arith" else _neg
    return _Node("const", node.column, helper(*(arg.value for arg in node.args)))


# --- code generation -------------------------------------------------------------------


class _CodeGenerator:
    """Python source for a tree; user text only ever becomes repr() literals in it."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self.temps = 0
        self.emitters: dict[str, Callable[[_Node], str]] = {
            "const": lambda node: self.constant(node.value),
            "root": lambda node: f"_s.get({node.value!r})",
            "field": self.field,
            "index": lambda node: f"_index({self.emit(node.args[0])}, {node.value!r})",
            "item": lambda node: f"_item({self.emit(node.args[0])}, {self.emit(node.args[1])})",
            "list": lambda node: f"[{self.emit_all(node.args)}]",
            "call": self.call,
            "history": lambda node: (
                f"_h_{node.value[0]}(_s, {', '.join(map(repr, node.value[1:]))})"
            ),
            "not": lambda node: f"(not {self.emit(node.args[0])})",
            "neg": lambda node: f"_neg({self.emit(node.args[0])})",
            "and": self.logic,
            "or": self.logic,
            "arith": lambda node: f"{_HELPERS[node.value][0]}({self.emit_all(node.args)})",
            "cmp": self.comparison,
        }

    def emit(self, node: _Node) -> str:
        return self.emitters[node.kind](node)

    def call(self, node: _Node) -> str:
        args = self.emit_all(node.args)
        if node.value in _READS_LOCAL_TIME:
            args += ', _s.get("now_local")'
        return f"_fn_{node.value}({args})"

    def emit_all(self, nodes: Iterable[_Node]) -> str:
        return ", ".join(map(self.emit, nodes))

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def constant(self, value: Any) -> str:
        # repr() of these is always a plain Python literal; anything else (floats, which
        # may be inf, durations, timestamps) travels as a named global.
        if value is None or type(value) in (bool, int, str):
            return repr(value)
        self.constants[name := f"_k{len(self.constants)}"] = value
        return name

    def field(self, node: _Node) -> str:
        # Plain dicts are read inline; _field handles other mappings and non-objects.
        t, key, base = self.temp(), repr(node.value), self.emit(node.args[0])
        return f"({t}.get({key}) if _type({t} := {base}) is _dict else _field({t}, {key}))"

    def logic(self, node: _Node) -> str:
        joined = f" {node.kind} ".join(map(self.emit, node.args))
        if all(map(_is_boolean, node.args)):
            return f"({joined})"
        return f"(True if ({joined}) else False)"

    def comparison(self, node: _Node) -> str:
        symbol, (left, right) = node.value, node.args
        if symbol in ("in", "not in", "contains"):
            code = self.membership(*((right, left) if symbol == "contains" else (left, right)))
        elif symbol in ("==", "!="):
            code = self.equality(left, right)
        else:
            helper = _HELPERS[symbol][0]
            inline = self.with_constant(left, right, "{a} " + symbol + " {b}", helper)
            return inline or f"{helper}({self.emit(left)}, {self.emit(right)})"
        return f"(not {code})" if symbol in ("not in", "!=") else code

    def with_constant(self, left: _Node, right: _Node, template: str, helper: str) -> str | None:
        """Inline code for a comparison with a number or text constant on one side.

        When the other side has the constant's type, Python's operator gives our answer;
        otherwise the helper decides.
        """
        constant, other = (left, right) if left.kind == "const" else (right, left)
        kind = type(constant.value)
        if constant.kind != "const" or kind not in (int, float, str):
            return None
        t, k = self.temp(), self.constant(constant.value)
        a, b = (k, t) if constant is left else (t, k)
        check = f"_type({t} := {self.emit(other)}) {'is _str' if kind is str else 'in _NUM'}"
        return f"({template.format(a=a, b=b)} if {check} else {helper}({a}, {b}))"

    def equality(self, left: _Node, right: _Node) -> str:
        for constant, other in ((right, left), (left, right)):
            if _is_singleton(constant) and other.kind != "const":  # "1 is None" warns
                return f"({self.emit(other)} is {constant.value!r})"
        inline = self.with_constant(left, right, "{a} == {b}", "_eq")
        return inline or f"_eq({self.emit(left)}, {self.emit(right)})"

    def membership(self, item: _Node, container: _Node) -> str:
        if container.kind == "list" and container.args and all(map(_is_text, container.args)):
            # A text is in a list of texts exactly when it is one of them (two texts never
            # compare as timestamps), so a set lookup decides.
            texts = [text.value for text in container.args]
            t, fast, slow = self.temp(), self.constant(frozenset(texts)), self.constant(texts)
            check = f"_type({t} := {self.emit(item)}) is _str"
            return f"({t} in {fast} if {check} else _in({t}, {slow}))"
        if _is_text(item) and _as_time(item.value) is None:
            # For a text that is not a timestamp, Python's own `in` on a list, tuple, string
            # or dict is exactly ours (no item can equal it by being parsed).
            t, k = self.temp(), self.constant(item.value)
            check = f"_type({t} := {self.emit(container)}) in _CONTAINERS"
            return f"({k} in {t} if {check} else _in({k}, {t}))"
        return f"_in({self.emit(item)}, {self.emit(container)})"


def _is_boolean(node: _Node) -> bool:
    if node.kind == "const":
        return type(node.value) is bool
    return node.kind in ("cmp", "not", "and", "or") or (node.kind, node.value) == ("call", "exists")


def _is_singleton(node: _Node) -> bool:
    return node.kind == "const" and type(node.value) in (bool, type(None))


def _is_text(node: _Node) -> bool:
    return node.kind == "const" and type(node.value) is str


def _static_path(node: _Node) -> tuple[str, ...] | None:
    if node.kind == "root":
        return (node.value,)
    base = _static_path(node.args[0]) if node.kind == "field" else None
    return None if base is None else (*base, node.value)


def _paths(node: _Node) -> Iterable[tuple[str, ...]]:
    if node.kind == "call" and node.value in _READS_LOCAL_TIME:
        yield ("now_local",)
    path = _static_path(node)
    if path is not None:
        yield path  # its prefixes are not reported: they are read only on the way
    else:
        for arg in node.args:
            yield from _paths(arg)


# --- public API ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression. Build one with :func:`compile_expression`.

    ``paths`` holds every field path the expression reads by fixed names, such as
    ``("profile", "plan")``; an index or a computed key ends a path (``event.items[0].sku``
    reads ``("event", "items")``), and a bare root is a path of one (``("now",)``).
    """

    source: str
    paths: frozenset[tuple[str, ...]]
    _function: Callable[[Mapping[str, Any]], Any] = field(compare=False, repr=False)
    # The history functions it calls, with their arguments: ("count", event, days),
    # ("sum", event, property, days), ("last", event), ("first_seen", event),
    # ("days_since", event), ("in_segment", segment).
    calls: frozenset[tuple[Any, ...]] = frozenset()
    # How it reads the time that passes, for the moments its answer can change (see
    # journeyman.domain.segments.next_change): ("days_since", event, k) where it compares
    # days_since(event) with the number k, and k None where it reads it otherwise;
    # ("hour", k) for hour(now_local) compared with k; ("day", None) for weekday or date
    # of now_local; ("anniversary", path) for is_anniversary(path), path None when it is
    # no fixed path; ("local", None) for any other reading of now_local.
    clock: frozenset[tuple[Any, ...]] = frozenset()
    # Whether, with no new event, the time that passes can only turn it from true to false
    # (never the other way): an ``and`` / ``or`` of ``count(...)`` at least (or more than)
    # a number, and of terms that do not read the time. A false one stays false.
    only_falls: bool = False
    # Where the whole expression is one history function that moves with time compared
    # with a number (``count("app_opened", "7d") >= 3``, ``7 > days_since("signed_up")``):
    # (the call as in ``calls``, the comparison, the number, whether the number is on the
    # left); None otherwise. Its next change is found without evaluating it as a whole.
    bound: tuple[tuple[Any, ...], str, int | float, bool] | None = None
    # Where it reads nothing but ``hour(now_local)`` compared with numbers (and / or / not
    # of such comparisons, ``hour(now_local) >= 9 and hour(now_local) < 18``): its answer
    # at each local hour, 0 to 23; None otherwise. Its next change is looked up, not
    # evaluated, at each moment.
    hours: tuple[bool, ...] | None = None
    # Where it is ``is_anniversary(path)`` and nothing else, path fixed: that path; None
    # otherwise. Its answer is true from the local midnight that begins the day to the next.
    anniversary: tuple[str, ...] | None = None

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The value of the expression in ``scope``; ``None`` for anything not computable."""
        try:
            return self._function(scope)
        except Exception:
            # The helpers do not raise on JSON-shaped data; this is the last resort for
            # exotic values (a mapping whose get raises, data nested past the recursion
            # limit, an object whose == raises), as the engine must never fail on data.
            return None

    def test(self, scope: Mapping[str, Any]) -> bool:
        """Whether the expression is true in ``scope``."""
        try:
            return bool(self._function(scope))
        except Exception:  # as in evaluate
            return False


def compile_expression(source: str) -> Expression:
    """Parse and compile ``source``; raise :class:`ExpressionError` if it is not valid."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be text, not {source!r}", 1, str(source))
    if len(source) > _MAX_LENGTH:
        message = f"the expression is longer than {_MAX_LENGTH} characters"
        raise ExpressionError(message, _MAX_LENGTH + 1, source)
    tree = _Parser(source).parse()
    generator = _CodeGenerator()
    code = f"def _evaluate(_s):\n    return {generator.emit(tree)}\n"
    namespace = {**_RUNTIME, **generator.constants}
    # Safe to exec: the code comes from our own tree, in which user text only ever appears
    # as repr() string literals, and its globals hold the helpers and nothing else.
    exec(compile(code, "<expression>", "exec"), namespace)
    calls = frozenset(_history_calls(tree))
    clock = frozenset(_clock_reads(tree))
    falls = _only_falls(tree)
    paths = frozenset(_paths(tree))
    function = namespace["_evaluate"]
    hours = _hour_answers(function) if _reads_only_hours(tree) else None
    anniversary = _static_path(tree.args[0]) if _is_call(tree, "is_anniversary") else None
    return Expression(
        source, paths, function, calls, clock, falls, _bound(tree), hours, anniversary
    )


# --- history functions -------------------------------------------------------------------

HISTORY_FUNCTIONS: Mapping[str, str] = MappingProxyType(
    {
        "count": "count(event, window): how many such events in the window (whole UTC days)",
        "sum": "sum(event, property, window): the sum of a number property over the window",
        "last": "last(event): the last such event (name, timestamp, properties), or null",
        "first_seen": "first_seen(event): when the profile first did it, or null",
        "days_since": "days_since(event): whole days since it last did it, or null if never",
        "in_segment": "in_segment(segment): whether the profile is in the segment now",
    }
)
_HISTORY_ARITY = {
    name: text.count(",", 0, text.index(")")) + 1 for name, text in HISTORY_FUNCTIONS.items()
}
# What each argument is, in order: an event name, a property name, a window, a segment.
_HISTORY_KINDS = {
    "count": ("event", "window"),
    "sum": ("event", "property", "window"),
    "last": ("event",),
    "first_seen": ("event",),
    "days_since": ("event",),
    "in_segment": ("segment",),
}


def _history_arguments(parser: _Parser, name: str, args: tuple[_Node, ...]) -> list[Any]:
    values: list[Any] = []
    for kind, arg in zip(_HISTORY_KINDS[name], args, strict=True):
        if arg.kind != "const" or type(arg.value) is not str or not arg.value.strip():
            message = f"{name}(): the {kind} must be written as text in quotes"
            raise parser.error(
                message + (', such as "30d"' if kind == "window" else ""), arg.column
            )
        values.append(_window(parser, arg) if kind == "window" else arg.value)
    return values


def _window(parser: _Parser, arg: _Node) -> int:
    """A window in whole days, from 1 to :data:`~journeyman.domain.history.MAX_WINDOW_DAYS`."""
    longest = _history.MAX_WINDOW_DAYS
    try:
        span = parse_duration(arg.value)
    except ValueError:
        span = None
    if span is None or span % timedelta(days=1) or not timedelta(days=1) <= span:
        message = f'{arg.value!r} is not a window of whole days such as "30d" or "2w"'
        raise parser.error(message, arg.column)
    if span.days > longest:
        message = f"{arg.value!r} is longer than the longest window kept, {longest}d"
        raise parser.error(message, arg.column)
    return span.days


def _history_calls(node: _Node) -> Iterable[tuple[Any, ...]]:
    if node.kind == "history":
        yield node.value
    for arg in node.args:
        yield from _history_calls(arg)


_ORDERINGS = frozenset({"==", "!=", "<", "<=", ">", ">="})


def _clock_reads(node: _Node) -> Iterable[tuple[Any, ...]]:
    """What of the passing time the tree reads (see :attr:`Expression.clock`)."""
    if node.kind == "cmp" and node.value in _ORDERINGS:
        left, right = node.args
        for side, other in ((left, right), (right, left)):
            number = other.kind == "const" and type(other.value) in (int, float)
            if number and _is_days_since(side):
                yield ("days_since", side.value[1], other.value)
                yield from _clock_reads(other)
                return
            if number and _is_local(side, "hour"):
                yield ("hour", other.value)
                return
    if _is_days_since(node):
        yield ("days_since", node.value[1], None)
    elif _is_local(node, "weekday") or _is_local(node, "date"):
        yield ("day", None)
    elif node.kind == "root" and node.value == "now_local":
        yield ("local", None)
    elif node.kind == "call" and node.value == "is_anniversary":
        path = _static_path(node.args[0])
        yield ("anniversary", path)
        if path is None:
            yield from _clock_reads(node.args[0])
    else:
        for arg in node.args:
            yield from _clock_reads(arg)


def _only_falls(node: _Node) -> bool:
    """Whether the tree is an and / or of ``count(...) >= k`` or ``> k`` (``k <= count(...)``,
    ``k < count(...)``), k a number, and of terms that do not read the time: as days leave
    the windows, counts only go down, so its answer can only go from true to false."""
    if node.kind in ("and", "or"):
        return all(_only_falls(arg) for arg in node.args)
    if node.kind == "cmp" and node.value in (">=", ">", "<=", "<"):
        counted, bound = node.args if node.value in (">=", ">") else reversed(node.args)
        number = bound.kind == "const" and type(bound.value) in (int, float)
        if number and counted.kind == "history" and counted.value[0] == "count":
            return True
    return not _reads_time(node)


def _bound(node: _Node) -> tuple[tuple[Any, ...], str, int | float, bool] | None:
    """The tree as (history call, comparison, number, number first) when it is a ``count``,
    ``sum`` or ``days_since`` compared with a number and nothing else (see
    :attr:`Expression.bound`)."""
    if node.kind != "cmp" or node.value not in _ORDERINGS:
        return None
    left, right = node.args
    for called, number, first in ((left, right, False), (right, left, True)):
        constant = number.kind == "const" and type(number.value) in (int, float)
        moving = called.kind == "history" and called.value[0] in ("count", "sum", "days_since")
        if constant and moving:
            return called.value, node.value, number.value, first
    return None


def _reads_only_hours(node: _Node) -> bool:
    """Whether the tree is an and / or / not of ``hour(now_local)`` compared with numbers."""
    if node.kind in ("and", "or", "not"):
        return all(_reads_only_hours(arg) for arg in node.args)
    if node.kind != "cmp" or node.value not in _ORDERINGS:
        return False
    left, right = node.args
    for side, other in ((left, right), (right, left)):
        if other.kind == "const" and type(other.value) in (int, float) and _is_local(side, "hour"):
            return True
    return False


def _hour_answers(function: Callable[[Mapping[str, Any]], Any]) -> tuple[bool, ...]:
    """The answer of an expression that reads only the local hour, at each hour of a day
    (as :meth:`Expression.test` gives it)."""
    answers = []
    for hour in range(24):
        try:
            answers.append(bool(function({"now_local": datetime(2000, 1, 1, hour, tzinfo=UTC)})))
        except Exception:  # as in Expression.test
            answers.append(False)
    return tuple(answers)


def _is_call(node: _Node, function: str) -> bool:
    return node.kind == "call" and node.value == function and len(node.args) == 1


def _reads_time(node: _Node) -> bool:
    """Whether the tree's answer can change with the time alone."""
    if node.kind == "history" and node.value[0] in ("count", "sum", "days_since"):
        return True
    if node.kind == "root" and node.value in ("now", "now_local"):
        return True
    if node.kind == "call" and node.value in _READS_LOCAL_TIME:  # is_anniversary(...)
        return True
    return any(_reads_time(arg) for arg in node.args)


def _is_days_since(node: _Node) -> bool:
    return node.kind == "history" and node.value[0] == "days_since"


def _is_local(node: _Node, function: str) -> bool:
    """Whether the node is ``function(now_local)``."""
    if node.kind != "call" or node.value != function or len(node.args) != 1:
        return False
    arg = node.args[0]
    return arg.kind == "root" and arg.value == "now_local"


def _kept(scope: Mapping[str, Any], event: str) -> Any:
    kept = scope.get("_history")
    if type(kept) is dict:  # as the engine gives it: no slower check of what it is
        return kept.get(event)
    return kept.get(event) if isinstance(kept, Mapping) else None


def _now(scope: Mapping[str, Any]) -> datetime | None:
    now = scope.get("now")
    return now if isinstance(now, datetime) else None


def _h_count(scope: Mapping[str, Any], event: str, days: int) -> Any:
    now = _now(scope)
    return None if now is None else _history.count(_kept(scope, event), days, now)


def _h_sum(scope: Mapping[str, Any], event: str, name: str, days: int) -> Any:
    now = _now(scope)
    return None if now is None else _history.total(_kept(scope, event), name, days, now)


def _h_last(scope: Mapping[str, Any], event: str) -> Any:
    return _history.last_view(event, _kept(scope, event))


def _h_first_seen(scope: Mapping[str, Any], event: str) -> Any:
    kept = _kept(scope, event)
    return None if kept is None else kept.first


def _h_days_since(scope: Mapping[str, Any], event: str) -> Any:
    now = _now(scope)
    return None if now is None else _history.days_since(_kept(scope, event), now)


def _h_in_segment(scope: Mapping[str, Any], segment: str) -> bool:
    segments = scope.get("_segments")
    return (type(segments) is dict or isinstance(segments, Mapping)) and segment in segments


_RUNTIME.update(
    {
        f"_h_{name}": helper
        for name, helper in (
            ("count", _h_count),
            ("sum", _h_sum),
            ("last", _h_last),
            ("first_seen", _h_first_seen),
            ("days_since", _h_days_since),
            ("in_segment", _h_in_segment),
        )
    }
)
