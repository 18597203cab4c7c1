"""Property-based fuzzing of what the domain reads from outside: incoming calls, the
expression language and message templates.

Each property is what a user relies on. Bad input gets the documented error, which names
the field or the place of the problem, and never another exception nor a stall (every
case must finish within the hypothesis deadline); what is accepted keeps the documented
limits. ``make fuzz`` runs many more cases (docs/testing.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st
from liquid.exceptions import LiquidError
from liquid.lex import get_lexer
from liquid.token import Token

from journeyman.domain.expressions import (
    FUNCTIONS,
    Expression,
    ExpressionError,
    compile_expression,
)
from journeyman.domain.ingest import (
    DEEPEST,
    NAME_LIMIT,
    InvalidEvent,
    identity_of,
    read_identify,
    read_track,
)
from journeyman.domain.model import EventDefinition
from journeyman.domain.state import Event
from journeyman.domain.template_lexer import tokenize
from journeyman.domain.templates import Template, TemplateError, compile_template
from journeyman.workspace import load_texts
from tests.fuzzing import fuzz_settings

RECEIVED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
OUTPUT_LIMIT = 1_000_000  # bytes of UTF-8 a render may give (docs: templates.py)

# --- data as it arrives: JSON values of every shape ------------------------------------

NUL = "\x00"
# Text with NUL characters, markup, quotes, whitespace and characters beyond ASCII.
SHORT_TEXT = st.lists(
    st.one_of(
        st.characters(),
        st.sampled_from([NUL, "<", ">", "&", '"', "'", "\n", " ", "é", "😀", "%3C"]),
    ),
    max_size=24,
).map("".join)


def _repeat(part: str, count: int) -> str:
    return part * count


# Long text without drawing each character: around NAME_LIMIT, and far beyond it.
LONG_TEXT = st.builds(
    _repeat,
    st.sampled_from(["x", "é", "😀", " ", NUL, "ab"]),
    st.one_of(st.sampled_from([NAME_LIMIT - 1, NAME_LIMIT, NAME_LIMIT + 1]), st.integers(0, 5000)),
)
TEXT = st.one_of(SHORT_TEXT, LONG_TEXT)
# Whole numbers at the edges of 64 bits, far outside them, and past the 4,300 digits that
# Python writes as text (a JSON decoder may refuse those; data computed in a journey may not).
BIG_INTEGERS = st.one_of(
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**80]),
    st.builds(pow, st.sampled_from([10, -10]), st.sampled_from([4400, 5001])),
)
NUMBERS = st.one_of(st.integers(), BIG_INTEGERS, st.floats(allow_nan=False, allow_infinity=False))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
KEYS = st.one_of(
    SHORT_TEXT, st.sampled_from(["email", "plan", "userId", "timestamp", "properties", ""])
)


def _nest(leaf: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        leaf = [leaf] if as_list else {"k": leaf}
    return leaf


JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
# Nesting around the ingest limit (DEEPEST) and well past it.
DEEP = st.builds(_nest, SCALARS, st.integers(DEEPEST - 2, DEEPEST + 40), st.booleans())
OBJECTS = st.dictionaries(KEYS, st.one_of(JSON, DEEP), max_size=6)


# --- incoming calls --------------------------------------------------------------------

EVENTS = """
kind: event
name: signed_up
identity: userId
schema:
  type: object
  required: [plan]
  properties:
    plan: {type: string, enum: [free, pro]}
    seats: {type: integer, minimum: 1}
---
kind: event
name: visited
identity: anonymousId
---
kind: event
name: subscribed
identity: email
"""


def _definitions() -> Mapping[str, EventDefinition]:
    loaded = load_texts({"events.yaml": EVENTS})
    assert loaded.workspace is not None, [str(p) for p in loaded.problems]
    return loaded.workspace.events


DEFINITIONS = _definitions()
# What a call's ids, names and timestamps may be: any JSON value, and likely ones.
IDS = st.one_of(TEXT, st.sampled_from(["u1", " u1 ", " ", ""]), SCALARS, JSON)
NAMES = st.one_of(st.sampled_from([*DEFINITIONS, "other"]), IDS)
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
    st.sampled_from(
        ["2026-01-05T09:30:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
    ),
    IDS,
)
PROPERTIES = st.one_of(
    st.none(),
    OBJECTS,
    st.fixed_dictionaries(
        {"plan": st.one_of(st.sampled_from(["free", "pro"]), JSON)},
        optional={"seats": JSON, "email": st.one_of(st.just("ada@example.com"), TEXT)},
    ),
    st.fixed_dictionaries({"email": st.one_of(TEXT.map(lambda t: t + "@x"), JSON)}),
    JSON,
)
CALL_KEYS = {
    "userId": IDS,
    "anonymousId": IDS,
    "event": NAMES,
    "properties": PROPERTIES,
    "traits": PROPERTIES,
    "timestamp": TIMESTAMPS,
    "messageId": IDS,
    "context": JSON,
}


def _merge(known: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, **known}


CALLS = st.one_of(
    st.builds(
        _merge,
        st.fixed_dictionaries({}, optional=CALL_KEYS),
        st.dictionaries(KEYS, JSON, max_size=3),
    ),
    JSON,  # not an object at all
)
# The fields a refusal may name: the body, or a path that starts at one of its keys.
FIELD_ROOTS = {"body", *CALL_KEYS}


def _walk(value: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    yield value, depth
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, depth + 1
            yield from _walk(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, depth + 1)


def assert_refusal_names_a_field(error: InvalidEvent) -> None:
    assert error.field.split(".")[0].split("[")[0] in FIELD_ROOTS, error.field
    assert error.rule, error.as_dict()
    assert error.message, error.as_dict()
    msgspec.json.encode(error.as_dict())  # the 400 answer can be written


def assert_keepable_name(value: object) -> None:
    assert isinstance(value, str), value
    assert value.strip(), value
    assert len(value) <= NAME_LIMIT, value
    assert NUL not in value, value


def assert_keepable(event: Event, definition: EventDefinition | None) -> None:
    """What every backend can keep, as ingest.py documents it."""
    assert_keepable_name(event.name)
    assert_keepable_name(event.profile_id)
    for value in (event.user_id, event.anonymous_id, event.message_id):
        if value is not None:
            assert_keepable_name(value)
    _, identity = identity_of(event, definition)
    assert_keepable_name(identity)
    assert isinstance(event.properties, dict)
    for item, depth in _walk(event.properties):
        if isinstance(item, str):
            assert NUL not in item, item
        elif isinstance(item, int) and not isinstance(item, bool):
            assert -(2**63) <= item <= 2**64 - 1, item
        elif isinstance(item, dict | list):
            assert depth <= DEEPEST
    json.dumps(event.properties, allow_nan=False)
    assert event.timestamp.utcoffset() == timedelta(0)


@fuzz_settings(300)
@given(call=CALLS)
@example(call={"userId": "u1", "event": "signed_up", "properties": {"plan": "pro"}})
@example(call={"userId": 42, "event": "visited", "anonymousId": "a" * (NAME_LIMIT + 1)})
@example(call={"anonymousId": "a", "event": "x", "properties": {"k": _nest(1, 60, False)}})
@example(call={"userId": "u", "event": "x", "timestamp": "9999-12-31T23:59:59-01:00"})
@example(call={"userId": 10**5000, "event": "x"})  # more digits than str() writes
def test_a_track_call_becomes_a_keepable_event_or_a_refusal_naming_its_field(call: Any) -> None:
    try:
        event = read_track(call, DEFINITIONS, RECEIVED)
    except InvalidEvent as error:
        assert_refusal_names_a_field(error)
        return
    assert_keepable(event, DEFINITIONS.get(event.name))


@fuzz_settings(200)
@given(call=CALLS)
@example(call={"userId": "u1", "traits": {"email": "a" * 300 + "@example.com"}})
@example(call={"anonymousId": "a", "traits": {"n": {NUL: "x"}}})
@example(call={"anonymousId": "a", "timestamp": 10**5000})  # repr() refuses it
def test_an_identify_call_becomes_a_keepable_event_or_a_refusal_naming_its_field(
    call: Any,
) -> None:
    try:
        event = read_identify(call, RECEIVED)
    except InvalidEvent as error:
        assert_refusal_names_a_field(error)
        return
    assert_keepable(event, None)
    email = event.properties.get("email")
    if isinstance(email, str):
        assert_keepable_name(email)


# --- the expression language -----------------------------------------------------------

# Pieces of expressions, valid and not: put together at random they make text that is
# often close to an expression, which reaches deeper into the parser than noise does.
EXPRESSION_PIECES = [
    *("profile", "event", "entry", "journey", "now", "plan", "tags", "total", "items", "at"),
    *(".", "[", "]", "(", ")", ",", "0", "-1", "2", "1.5", "99999999999999999999999"),
    *('"pro"', "'x'", '"2026-01-05T09:30:00Z"', '"1d"', '"a\\"b"', "'\\q'", '"open'),
    *("true", "false", "null", "None", "TRUE", "and", "or", "not", "in", "contains"),
    *("==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"),
    *(f"{name}(" for name in FUNCTIONS),
    *("=", "&&", "||", "!", "<>", "&", "|", "_private", "x", "@", "\\", "é", NUL, " ", "\n"),
]
PIECES_TEXT = st.lists(st.sampled_from(EXPRESSION_PIECES), max_size=40).map(" ".join)


# Text built by repeating a few pieces: deep nesting, long chains, and the inputs on which
# a parser or a regular expression would take quadratic time if it could.
def _pumped(prefix: str, middle: str, length: int, suffix: str) -> str:
    """``middle`` repeated to about ``length`` characters, between ``prefix`` and ``suffix``."""
    return prefix + middle * max(1, length // len(middle)) + suffix


PUMPED_EXPRESSION = st.builds(
    _pumped,
    PIECES_TEXT,
    st.lists(st.sampled_from(EXPRESSION_PIECES), min_size=1, max_size=3).map("".join),
    st.sampled_from([10, 100, 1990, 2000]),
    PIECES_TEXT,
)

_PATHS = [
    "profile.plan",
    "profile.tags",
    "profile.tags[0]",
    "profile['a b']",
    "event.total",
    "event.items[-1].price",
    "event[entry.key]",
    "entry.at",
    "entry.cart_id",
    "journey.version",
    "now",
    "event.timestamp",
]
_LITERALS = ["1", "-2.5", "0", '"pro"', "''", '"2026-01-05"', "true", "null", '["a", 1]', "[]"]
_UNARY = ["lower", "upper", "len", "abs", "round", "exists", "days", "hours", "minutes"]
_UNARY += ["duration", "timestamp"]
_BINARY = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "+", "-", "*", "/", "%"]
_BINARY += ["and", "or"]


def _expressions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds("{} {} {}".format, inner, st.sampled_from(_BINARY), inner),
        st.builds("not {}".format, inner),
        st.builds("-{}".format, inner),
        st.builds("({})".format, inner),
        st.builds("{}({})".format, st.sampled_from(_UNARY), inner),
        st.builds("{}({}, {})".format, st.sampled_from(["min", "max"]), inner, inner),
        st.builds("[{}, {}]".format, inner, inner),
        st.builds("({})[{}]".format, inner, inner),
    )


# Expressions as an author writes them; some still break a rule (a chained comparison).
EXPRESSIONS = st.recursive(st.sampled_from(_PATHS + _LITERALS), _expressions, max_leaves=10)
SOURCES = st.one_of(st.text(max_size=100), PIECES_TEXT, PUMPED_EXPRESSION, EXPRESSIONS, LONG_TEXT)


def compiled_or_error(source: str) -> Expression | None:
    """The compiled expression, or None after checking the error it raised."""
    try:
        return compile_expression(source)
    except ExpressionError as caught:
        error = caught
    assert 1 <= error.column <= len(source) + 1, (error.column, source)
    assert error.message
    return None


@fuzz_settings(800)
@given(source=SOURCES)
@example(source="(" * 60 + "1" + ")" * 60)
@example(source="not " * 60 + "true")
@example(source="-" * 1999 + "1")
@example(source="profile" + ".a" * 999)
@example(source="x" * 2001)
@example(source='"' + "\\" * 1998 + '"')
def test_any_text_compiles_or_is_an_expression_error_with_its_column(source: str) -> None:
    compiled_or_error(source)


# Data as the engine passes it: JSON values, timestamps (the event's, `now`) and dates.
TIMES = st.one_of(
    st.datetimes(timezones=st.none() | st.just(UTC) | st.just(timezone(timedelta(hours=-5)))),
    st.dates(),
    st.sampled_from([datetime.min, datetime.max.replace(tzinfo=UTC), date.min]),
)
TIME_TEXT = st.sampled_from(["2026-01-05T09:30:00Z", "2026-01-05", "0001-01-01", "1d", "30s"])
VALUES = st.recursive(
    st.one_of(SCALARS, TIMES, TIME_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)
DATA = st.fixed_dictionaries(
    {},
    optional={
        "plan": VALUES,
        "tags": VALUES,
        "total": VALUES,
        "items": VALUES,
        "at": VALUES,
        "cart_id": VALUES,
        "key": VALUES,
        "a b": VALUES,
        "timestamp": TIMES,
    },
)
SCOPES = st.fixed_dictionaries(
    {
        "profile": DATA,
        "event": DATA,
        "entry": DATA,
        "journey": st.fixed_dictionaries({"name": TEXT, "version": st.integers(1, 10**6)}),
        "now": st.datetimes(timezones=st.just(UTC)),
    }
)
_KINDS = (type(None), bool, int, float, str, list, tuple, dict, datetime, date, timedelta)


@fuzz_settings(300)
@given(source=st.one_of(EXPRESSIONS, PIECES_TEXT), scope=SCOPES)
@example(source="event.total * event.total / 0.0000001", scope={"event": {"total": 10**80}})
@example(source="entry.at + days(event.total)", scope={"entry": {"at": "9999-12-31"}})
def test_evaluating_any_expression_on_any_data_gives_a_value_and_never_raises(
    source: str, scope: dict[str, Any]
) -> None:
    expression = compiled_or_error(source)
    if expression is None:
        return
    # The compiled code itself, not only evaluate(), whose last-resort handler is for
    # exotic objects: on data the engine passes, no operator or function may raise.
    value = expression._function(scope)
    assert isinstance(value, _KINDS), value
    assert expression.test(scope) is bool(value)


# --- templates -------------------------------------------------------------------------

# Pieces of Liquid, valid and not: delimiters, whitespace control, tags and their ends.
TEMPLATE_PIECES = [
    *("{{", "}}", "{%", "%}", "{{-", "-}}", "{%-", "-%}", "{", "}", "%", "-"),
    *(" ", "\n", "a", "profile.name", "|", ":", ",", "'", '"', "(1..3)", "..", "[", "]"),
    *("if", "endif", "for", "in", "endfor", "raw", "endraw", "comment", "endcomment"),
    *("doc", "enddoc", "liquid", "assign", "=", "capture", "endcapture", "case", "when"),
    *("else", "unless", "cycle", "#", "upcase", "default", "include", "render", "echo"),
    *("1", NUL, "é", "<b>", "&"),
]
TEMPLATE_PIECES_TEXT = st.lists(st.sampled_from(TEMPLATE_PIECES), max_size=40).map("".join)
# Delimiters and the words of the tags that change how text is read, repeated: the inputs
# on which a lexer built of regular expressions would take quadratic time if it could.
_DELIMITERS = ["{{", "}}", "{%", "%}", "-", " ", "\n", "{", "}", "%", "a", "#", "'"]
_DELIMITERS += ["raw", "endraw", "comment", "endcomment", "doc", "enddoc", "{% raw %}"]
_OPENINGS = ["", "", "{% comment %}", "{% raw %}", "{% doc %}", "{{ a }}", "{% if a %}", "x"]
SHORT_DELIMITED = st.lists(st.sampled_from([*_DELIMITERS, "if", "x", "\t"]), max_size=30).map(
    "".join
)
PUMPED_TEMPLATE = st.builds(
    _pumped,
    st.sampled_from(_OPENINGS),
    st.lists(st.sampled_from(_DELIMITERS), min_size=1, max_size=3).map("".join),
    st.sampled_from([10, 100, 20_000, 50_000]),
    st.sampled_from(["", "", "}}", "%}", "{% endraw %}", "{% endcomment %}", "{{"]),
)

_OUTPUT_PATHS = [
    "profile.name",
    "profile.tags",
    "profile.tags[0]",
    "profile.big",
    "profile",
    "event.items",
    "entry.n",
    "journey.name",
    "now",
    "message.id",
    "t",
    "forloop.index",
]
_FILTERS = [
    *("upcase", "downcase", "capitalize", "strip", "size", "first", "last", "reverse"),
    *("join: ','", "split: 'a'", "append: profile.big", "prepend: profile.name"),
    *("default: 'there'", "plus: 1", "minus: entry.n", "times: 1000000", "divided_by: 0"),
    *("modulo: 0", "round: 2", "ceil", "floor", "abs", "at_least: 5", "at_most: entry.n"),
    *("date: '%Y-%m-%d'", "date: profile.name", "truncate: 5", "truncatewords: entry.n"),
    *("replace: 'a', profile.name", "remove: 'x'", "slice: 1, 3", "sort", "sort_natural"),
    *("uniq", "compact", "map: 'name'", "where: 'name'", "sum", "url_encode", "url_decode"),
    *("escape", "escape_once", "strip_html", "strip_newlines", "concat: profile.tags"),
]
_CONDITIONS = ["profile.name", "entry.n > 2", "profile.tags contains 'a'", "t == empty"]
_CONDITIONS += ["profile.name == 'x' and entry.n", "event.items.size < 3 or profile.big"]
_ITERABLES = ["profile.tags", "event.items", "(1..3)", "(1..10000)", "(1..entry.n)"]
_ITERABLES += ["(1..1000000000)", "profile.name", "profile.tags limit: 2 offset: 1"]

OUTPUTS = st.builds(
    lambda path, filters: "{{ " + " | ".join([path, *filters]) + " }}",
    st.sampled_from(_OUTPUT_PATHS),
    st.lists(st.sampled_from(_FILTERS), max_size=3),
)


def _blocks(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    conditions, iterables = st.sampled_from(_CONDITIONS), st.sampled_from(_ITERABLES)
    return st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.builds("{{% if {} %}}{}{{% else %}}{}{{% endif %}}".format, conditions, inner, inner),
        st.builds("{{% unless {} %}}{}{{% endunless %}}".format, conditions, inner),
        st.builds("{{% for t in {} %}}{}{{% endfor %}}".format, iterables, inner),
        st.builds("{{% tablerow t in {} %}}{}{{% endtablerow %}}".format, iterables, inner),
        st.builds("{{% capture t %}}{}{{% endcapture %}}".format, inner),
        st.builds(
            "{{% case entry.n %}}{{% when 1, 2 %}}{}{{% else %}}{}{{% endcase %}}".format,
            inner,
            inner,
        ),
        st.builds("{{% assign t = {} %}}{}".format, st.sampled_from(_OUTPUT_PATHS), inner),
        st.builds(
            "{{% assign t = t | append: {} %}}{}".format, st.sampled_from(_OUTPUT_PATHS), inner
        ),
    )


TEMPLATE_LEAVES = st.one_of(
    OUTPUTS,
    st.sampled_from(["Hi ", "<p>", "</p>", "\n", "{% cycle 'a', 'b' %}", "{% increment n %}"]),
    st.sampled_from(["{% echo profile.name | upcase %}", "{% comment %}x{% endcomment %}"]),
    st.sampled_from(["{% raw %}{{ not output }}{% endraw %}", "{% break %}", "{% continue %}"]),
)
TEMPLATES = st.recursive(TEMPLATE_LEAVES, _blocks, max_leaves=8)
TEMPLATE_SOURCES = st.one_of(
    st.text(max_size=100), TEMPLATE_PIECES_TEXT, PUMPED_TEMPLATE, TEMPLATES
)


def template_or_error(source: str, escape: bool) -> Template | None:
    """The compiled template, or None after checking the error it raised."""
    try:
        return compile_template(source, escape=escape)
    except TemplateError as caught:
        error = caught
    lines = source.split("\n")
    assert 1 <= error.line <= len(lines), (error.line, source)
    assert 1 <= error.column <= len(lines[error.line - 1]) + 1, (error.column, source)
    assert error.message
    return None


@fuzz_settings(600)
@given(source=TEMPLATE_SOURCES, escape=st.booleans())
@example(source="{{" * 8000, escape=False)
@example(source="{% raw %}" * 4000, escape=False)
@example(source="{%comment%}" + "{%a" * 4000, escape=False)
@example(source="{{" + " " * 8000 + "}}", escape=True)
def test_any_text_compiles_or_is_a_template_error_with_its_line_and_column(
    source: str, escape: bool
) -> None:
    template_or_error(source, escape)


def _lexed(lexer: Callable[[str], Iterator[Token]], source: str) -> list[tuple[Any, ...]]:
    try:
        return [(token.kind, token.value, token.start_index) for token in lexer(source)]
    except LiquidError as error:
        start = error.token.start_index if error.token is not None else None
        return [(type(error).__name__, str(error.message), start)]


@fuzz_settings(1000)
@given(source=st.one_of(TEMPLATE_PIECES_TEXT, st.text(max_size=60), SHORT_DELIMITED))
@example(source="{{ }}{%- raw -%} {{ {% endraw %}{%comment%}{{ {%endcomment%}{{-}}")
@example(source="{% if a  \n -%}{{-  b \t}}{% endif%}{%#x%}{{--}}{% doc %}{%enddoc%}")
def test_the_template_lexer_reads_every_text_as_liquid_does(source: str) -> None:
    """Templates are lexed by a linear-time twin of liquid's lexer: same tokens, same
    errors, at the same places."""
    assert _lexed(tokenize, source) == _lexed(get_lexer(), source)


TEMPLATE_TEXT = st.lists(
    st.one_of(st.characters(), st.sampled_from(["<", ">", "&", '"', "'", "%3C", "\n", " "])),
    max_size=30,
).map("".join)
TEMPLATE_DATA = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(TEMPLATE_TEXT, SCALARS),
        "tags": st.lists(st.one_of(TEMPLATE_TEXT, SCALARS), max_size=5),
        "big": st.builds(_repeat, st.sampled_from(["x", "<", "é"]), st.integers(0, 300_000)),
        "items": st.one_of(JSON, st.lists(st.fixed_dictionaries({"name": TEMPLATE_TEXT}))),
        "n": st.one_of(st.integers(-5, 100), SCALARS),
    },
)
TEMPLATE_SCOPES = st.fixed_dictionaries(
    {
        "profile": TEMPLATE_DATA,
        "event": TEMPLATE_DATA,
        "entry": TEMPLATE_DATA,
        "journey": st.fixed_dictionaries({"name": TEMPLATE_TEXT, "version": st.integers()}),
        "now": st.datetimes(timezones=st.just(UTC)),
    },
    optional={"message": st.fixed_dictionaries({"id": TEMPLATE_TEXT})},
)


@fuzz_settings(250, deadline_ms=5000)
@given(source=TEMPLATES, scope=TEMPLATE_SCOPES, escape=st.booleans())
@example(
    source="{% for t in (1..10000) %}{{ profile.big | append: profile.big }}{% endfor %}",
    scope={"profile": {"big": "x" * 300_000}},
    escape=False,
)
@example(source="Hi {{ profile.name }}", scope={"profile": {"name": 10**5000}}, escape=True)
def test_rendering_any_template_with_any_data_never_raises_and_stays_within_the_limits(
    source: str, scope: dict[str, Any], escape: bool
) -> None:
    template = template_or_error(source, escape)
    if template is None:
        return
    text = template.render(scope)
    assert isinstance(text, str)
    assert len(text.encode("utf-8", "surrogatepass")) <= OUTPUT_LIMIT


# Filters that turn a value into text without making markup of it (not `safe` nor
# `newline_to_br`, whose point is to output markup), with arguments free of markup.
_TEXT_FILTERS = [
    *("upcase", "downcase", "capitalize", "strip", "first", "last", "join: ','", "size"),
    *("append: profile.name", "prepend: entry.name", "default: 'there'", "truncate: 8"),
    *("replace: 'a', entry.name", "url_decode", "url_encode", "escape", "escape_once"),
    *("strip_html", "split: ','", "slice: 0, 4", "date: entry.name", "remove: 'x'"),
]
HTML_OUTPUTS = st.builds(
    lambda path, filters: "{{ " + " | ".join([path, *filters]) + " }}",
    st.sampled_from(["profile.name", "entry.name", "profile.tags", "event.name", "profile"]),
    st.lists(st.sampled_from(_TEXT_FILTERS), max_size=3),
)
HTML_TEMPLATES = st.lists(
    st.one_of(
        HTML_OUTPUTS,
        st.sampled_from(["Dear ", ", ", "\n", "{% for t in profile.tags %}{{ t }}{% endfor %}"]),
        st.sampled_from(["{% if profile.name %}{{ profile.name }}{% endif %}"]),
        st.sampled_from(["{% capture c %}{{ entry.name }}{% endcapture %}{{ c }}"]),
    ),
    min_size=1,
    max_size=6,
).map("".join)
MARKUP = st.lists(st.sampled_from(["<", ">", '"', "'", "&", "%3C", "%22", "a", ",", " "])).map(
    "".join
)
MARKUP_DATA = st.fixed_dictionaries(
    {"name": MARKUP, "tags": st.lists(MARKUP, max_size=4)},
)


@fuzz_settings(300)
@given(source=HTML_TEMPLATES, profile=MARKUP_DATA, entry=MARKUP_DATA, event=MARKUP_DATA)
@example(
    source="{{ profile.name | url_decode }}",
    profile={"name": "%3Cscript%3E", "tags": []},
    entry={"name": "", "tags": []},
    event={"name": "", "tags": []},
)
def test_html_parts_escape_every_value_they_output(
    source: str, profile: dict[str, Any], entry: dict[str, Any], event: dict[str, Any]
) -> None:
    scope = {"profile": profile, "entry": entry, "event": event}
    text = compile_template(source, escape=True).render(scope)
    assert not set(text) & set("<>\"'"), text
