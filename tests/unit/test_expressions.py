"""The expression language: syntax, semantics, null safety, sandboxing and errors."""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from journeyman.domain.expressions import (
    FUNCTIONS,
    Expression,
    ExpressionError,
    compile_expression,
)

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
SCOPE: dict[str, Any] = {
    "profile": {
        "plan": "pro",
        "tags": ["vip", "beta"],
        "age": 41,
        "score": 2.5,
        "name": "Ada",
        "address": {"city": "Paris"},
        "first name": "Ada",
        "_id": "p1",
        "verified": True,
        "nothing": None,
        "signed_up_at": "2025-12-01T00:00:00Z",
    },
    "event": {
        "total": 150,
        "plan": "internal",
        "cart_id": "c1",
        "items": [{"sku": "a", "qty": 2}, {"sku": "b"}],
        "at": "2026-01-04T09:30:00Z",
        "position": 1,
        "key": "plan",
        "in": "keyword-named field",
    },
    "entry": {
        "cart_id": "c1",
        "timestamp": "2026-01-01T00:00:00Z",
        "appointment_at": "2026-01-10T15:00:00+01:00",
    },
    "journey": {"name": "welcome", "version": 3},
    "now": NOW,
}


def evaluate(source: str, scope: Mapping[str, Any] = SCOPE) -> Any:
    return compile_expression(source).evaluate(scope)


def compile_error(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    return caught.value


# --- literals and access ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("42", 42),
        ("1.5", 1.5),
        ('"double"', "double"),
        ("'single'", "single"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        (r'"back\\slash"', "back\\slash"),
        (r'"a\nb\tc"', "a\nb\tc"),
        ("true", True),
        ("false", False),
        ("null", None),
        ('["pro", "team"]', ["pro", "team"]),
        ("[]", []),
        ("[1, [2, null]]", [1, [2, None]]),
    ],
)
def test_literals_evaluate_to_their_values(source: str, expected: Any) -> None:
    assert evaluate(source) == expected


def test_list_literals_are_fresh_on_every_evaluation() -> None:
    expression = compile_expression("[1, 2]")
    first = expression.evaluate(SCOPE)
    first.append(3)
    assert expression.evaluate(SCOPE) == [1, 2]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("profile.plan", "pro"),
        ("profile.address.city", "Paris"),
        ('profile["first name"]', "Ada"),
        ('profile["_id"]', "p1"),
        ("profile.tags[0]", "vip"),
        ("profile.tags[-1]", "beta"),
        ("event.items[1].sku", "b"),
        ("event[event.key]", "internal"),
        ("profile.tags[event.position]", "beta"),
        ("event.in", "keyword-named field"),
        ("journey.version", 3),
        ("now", NOW),
    ],
)
def test_field_access_reads_keys_and_items(source: str, expected: Any) -> None:
    assert evaluate(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "profile.missing",
        "profile.missing.deeper",
        "profile.plan.length",  # access on a string
        "profile.age.value",  # on a number
        "profile.nothing.x",  # on null
        "profile.tags.first",  # a name on a list
        "profile.tags[2]",
        "profile.tags[-3]",
        "profile.address[0]",
        "profile.plan[0]",  # strings are not indexed
        "profile.tags[1.0]",
        "profile.tags[true]",
        "profile.tags[profile.nothing]",
        "event.items[0][profile.address]",
        "[1, 2][5]",
        "entry.x.y.z",
    ],
)
def test_access_that_finds_nothing_is_null(source: str) -> None:
    assert evaluate(source) is None


def test_roots_missing_from_the_scope_are_null() -> None:
    assert evaluate("profile.plan", {}) is None
    assert evaluate("now", {"profile": {}}) is None


def test_access_works_on_any_mapping_and_tuple() -> None:
    scope = {"profile": OrderedDict(plan="pro", tags=("a", "b"))}
    assert evaluate("profile.plan", scope) == "pro"
    assert evaluate("profile.tags[1]", scope) == "b"
    assert evaluate('"a" in profile.tags', scope) is True


def test_access_never_calls_attributes() -> None:
    class Profile:
        plan = "pro"

    assert evaluate("profile.plan", {"profile": Profile()}) is None


# --- logic and precedence --------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true and true", True),
        ("true and false", False),
        ("false or true", True),
        ("null or 0", False),
        ("profile.plan and profile.tags", True),  # truthy values, boolean result
        ("profile.plan or profile.missing", True),
        ('"" or []', False),
        ("not null", True),
        ("not profile.tags", False),
        ("not not profile.plan", True),
        ("not 0", True),
        ("not profile.missing", True),
        ("true or false and false", True),  # and binds tighter than or
        ("not 1 == 2", True),  # not is looser than comparisons
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-2 * 3", -6),
        ("10 - 4 - 3", 3),  # left-associative
        ("2 * 3 % 4", 2),
        ("1 + 2 == 3 and 2 * 2 == 4", True),
        ("-profile.age", -41),
    ],
)
def test_logic_and_precedence(source: str, expected: Any) -> None:
    result = evaluate(source)
    assert result == expected
    assert type(result) is type(expected)


class RecordingScope(Mapping[str, Any]):
    """A scope that remembers which roots were read."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.read: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.read.append(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize(
    ("source", "read"),
    [
        ("profile.plan == 'free' and event.total > 1", ["profile"]),
        ("profile.plan == 'pro' or event.total > 1", ["profile"]),
        ("profile.plan == 'pro' and event.total > 1", ["profile", "event"]),
    ],
)
def test_and_or_stop_as_soon_as_the_answer_is_known(source: str, read: list[str]) -> None:
    scope = RecordingScope(SCOPE)
    compile_expression(source).evaluate(scope)
    assert scope.read == read


def test_test_gives_the_truthiness_of_the_value() -> None:
    assert compile_expression("profile.tags").test(SCOPE) is True
    assert compile_expression("profile.missing").test(SCOPE) is False
    assert compile_expression("profile.plan == 'pro'").test(SCOPE) is True
    assert compile_expression("0").test(SCOPE) is False


# --- comparisons -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('profile.plan == "pro"', True),
        ("'pro' == profile.plan", True),
        ('event.plan != "internal"', False),
        ("event.cart_id == entry.cart_id", True),
        ("1 == 1.0", True),
        ("profile.age == 41.0", True),
        ("true == 1", False),
        ("profile.verified == 1", False),
        ("profile.verified == true", True),
        ("false == 0", False),
        ("0 == false", False),
        ("null == null", True),
        ("profile.missing == null", True),
        ("profile.plan == null", False),
        ("profile.missing != null", False),
        ('"1" == 1', False),
        ("[1, 2] == [1, 2.0]", True),
        ("[1, true] == [1, 1]", False),
        ("profile.address == profile.address", True),
        ("profile.tags == ['vip', 'beta']", True),
        ("days(1) == hours(24)", True),
        ("3 > 2", True),
        ("2 >= 2", True),
        ("profile.score < 3", True),
        ("profile.score <= 2", False),
        ("event.total > 100", True),
        ("100 < event.total", True),
        ('"apple" < "banana"', True),
        ("hours(1) < minutes(90)", True),
        ('"10" > 9', False),  # incompatible types are never ordered
        ('"10" < 9', False),
        ("null < 1", False),
        ("null >= null", False),
        ("profile.missing > 0", False),
        ("profile.missing <= 0", False),
        ("true > false", False),
        ("[2] > [1]", False),
        ("profile.tags < 3", False),
    ],
)
def test_comparisons(source: str, expected: bool) -> None:
    assert evaluate(source) is expected


def test_comparisons_cannot_be_chained() -> None:
    error = compile_error("1 < 2 < 3")
    assert error.column == 7
    assert "chained" in error.message
    assert "a < b and b < c" in error.message


def test_a_parenthesised_comparison_can_be_compared() -> None:
    assert evaluate("(1 < 2) == true") is True


# --- membership ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('"vip" in profile.tags', True),
        ('"gold" in profile.tags', False),
        ('profile.tags contains "beta"', True),
        ('"gold" not in profile.tags', True),
        ('"vip" not in profile.tags', False),
        ('event.plan in ["pro", "internal"]', True),
        ('profile.age in ["pro", "internal"]', False),
        ("profile.age in [40, 41.0]", True),
        ("1 in [true]", False),
        ("true in [1]", False),
        ("null in [null]", True),
        ("[1] in [[1], [2]]", True),
        ('"ar" in "Paris"', True),
        ('profile.address.city contains "ar"', True),
        ('1 in "123"', False),
        ('"city" in profile.address', True),
        ('"country" in profile.address', False),
        ("1 in profile.address", False),
        ('"x" in null', False),
        ('"x" in 12', False),
        ('"vip" in profile.missing', False),
        ("profile.missing in profile.tags", False),
        ("[1, 2] in profile.address", False),
    ],
)
def test_membership(source: str, expected: bool) -> None:
    assert evaluate(source) is expected


def test_membership_finds_a_timestamp_equal_to_the_text() -> None:
    scope = {"profile": {"dates": [datetime(2026, 1, 1, tzinfo=UTC)]}}
    assert evaluate('"2026-01-01T00:00:00Z" in profile.dates', scope) is True
    assert evaluate("event.at in profile.dates", {**scope, "event": {"at": "2026-01-01"}})


# --- arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.total + 1", 151),
        ("event.total - 50", 100),
        ("profile.score * 2", 5.0),
        ("7 / 2", 3.5),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("1 + 0.5", 1.5),
        ('"journey" + "man"', "journeyman"),
        ('profile.name + " Lovelace"', "Ada Lovelace"),
        ("days(1) + hours(2)", timedelta(days=1, hours=2)),
        ("days(1) - hours(2)", timedelta(hours=22)),
        ("hours(2) * 3", timedelta(hours=6)),
        ("3 * hours(2)", timedelta(hours=6)),
        ("hours(3) / 2", timedelta(hours=1, minutes=30)),
        ("-hours(1)", timedelta(hours=-1)),
    ],
)
def test_arithmetic(source: str, expected: Any) -> None:
    assert evaluate(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "1 / 0",
        "1 % 0",
        "profile.score / 0",
        "hours(1) / 0",
        '"a" + 1',
        '1 + "a"',
        '"a" * 3',  # no string repetition
        '"a" - "b"',
        "[1] + [2]",
        "true + 1",
        "null + 1",
        "profile.missing * 2",
        "profile.address + 1",
        "hours(1) + 1",
        "hours(1) * hours(1)",
        "now + now",
        "now * 2",
        "-profile.plan",
        "-true",
        "-null",
        "now + days(99999999)",  # past the last representable date
    ],
)
def test_invalid_arithmetic_is_null(source: str) -> None:
    assert evaluate(source) is None


# --- timestamps and durations ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("now - entry.timestamp", timedelta(days=4, hours=9, minutes=30)),
        ("entry.timestamp - now", -timedelta(days=4, hours=9, minutes=30)),
        ("now + duration('2d')", datetime(2026, 1, 7, 9, 30, tzinfo=UTC)),
        ("now - hours(1)", datetime(2026, 1, 5, 8, 30, tzinfo=UTC)),
        ("duration('1h') + now", datetime(2026, 1, 5, 10, 30, tzinfo=UTC)),
        # A string next to a duration is read as a timestamp, converted to UTC.
        ('entry.appointment_at - duration("1d")', datetime(2026, 1, 9, 14, 0, tzinfo=UTC)),
        ("timestamp(entry.timestamp) + days(1)", datetime(2026, 1, 2, tzinfo=UTC)),
        ('now - "2026-01-05T08:30:00Z"', timedelta(hours=1)),
        ('"2026-01-05T08:30:00" - now', timedelta(hours=-1)),  # no offset means UTC
    ],
)
def test_timestamp_arithmetic(source: str, expected: Any) -> None:
    result = evaluate(source)
    assert result == expected
    if isinstance(result, datetime):
        assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("now - entry.timestamp > duration('2d')", True),
        ("now - entry.timestamp > duration('5d')", False),
        ("now > entry.timestamp", True),
        ("entry.timestamp < now", True),
        ('now == "2026-01-05T09:30:00Z"', True),
        ('now == "2026-01-05T10:30:00+01:00"', True),
        ('"2026-01-05T09:30:00Z" == now', True),
        ('now != "2026-01-05T09:30:00Z"', False),
        ("event.at < now", True),
        ("now > 'not a time'", False),
        ("now < 'not a time'", False),
        ("now == 'not a time'", False),
        ("now != 'not a time'", True),
        ("now > 5", False),
        ("now > duration('1d')", False),
        ("now == null", False),
        # Two strings stay strings, even when both look like timestamps.
        ('"2026-01-05T10:30:00+01:00" == "2026-01-05T09:30:00Z"', False),
        ("timestamp('2026-01-05T10:30:00+01:00') == now", True),
    ],
)
def test_timestamp_comparisons(source: str, expected: bool) -> None:
    assert evaluate(source) is expected


def test_naive_and_aware_timestamps_mix_as_utc() -> None:
    scope = {"now": NOW, "event": {"at": datetime(2026, 1, 5, 9, 30)}}
    assert evaluate("event.at == now", scope) is True
    assert evaluate("now - event.at", scope) == timedelta(0)
    assert evaluate("event.at < now + hours(1)", scope) is True


def test_dates_behave_as_midnight_utc() -> None:
    scope = {"now": NOW, "profile": {"birthday": date(2026, 1, 5)}}
    assert evaluate("now - profile.birthday", scope) == timedelta(hours=9, minutes=30)
    assert evaluate("profile.birthday < now", scope) is True


@pytest.mark.parametrize(
    "source",
    [
        'now + "garbage"',
        '"garbage" - duration("1d")',
        "entry.timestamp - entry.timestamp",  # two strings are not timestamps
        "profile.missing - duration('1d')",
        "now - 5",
    ],
)
def test_unreadable_timestamp_arithmetic_is_null(source: str) -> None:
    assert evaluate(source) is None


# --- functions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('duration("2d")', timedelta(days=2)),
        ('duration("1h30m")', timedelta(hours=1, minutes=30)),
        ("duration(journey.name)", None),
        ("duration(profile.missing)", None),
        ("duration(days(1))", timedelta(days=1)),
        ('timestamp("2026-01-05T10:30:00+01:00")', NOW),
        ("timestamp(now)", NOW),
        ("timestamp(profile.name)", None),
        ("timestamp(profile.age)", None),
        ("timestamp(profile.missing)", None),
        ('lower("ÀBC")', "àbc"),
        ("upper(profile.name)", "ADA"),
        ("lower(42)", None),
        ("upper(null)", None),
        ("len(profile.name)", 3),
        ("len(profile.tags)", 2),
        ("len(profile.address)", 1),
        ("len(42)", None),
        ("len(null)", None),
        ("abs(-3)", 3),
        ("abs(2.5)", 2.5),
        ("abs(-hours(2))", timedelta(hours=2)),
        ("abs(profile.name)", None),
        ("abs(true)", None),
        ("min(1, 2.5)", 1),
        ("max(1, 2.5)", 2.5),
        ('min("b", "a")', "a"),
        ("max(hours(1), minutes(90))", timedelta(minutes=90)),
        ("max(now, entry.timestamp)", NOW),
        ("min(now, entry.timestamp)", datetime(2026, 1, 1, tzinfo=UTC)),
        ('min(1, "a")', None),
        ("max(null, 1)", None),
        ("round(2.6)", 3),
        ("round(2.5)", 2),
        ("round(-1.4)", -1),
        ("round(7)", 7),
        ('round("7")', None),
        ("exists(profile.plan)", True),
        ("exists(profile.nothing)", False),
        ("exists(profile.missing.deeper)", False),
        ("exists(false)", True),
        ("days(2)", timedelta(days=2)),
        ("days(0.5)", timedelta(hours=12)),
        ("hours(profile.age)", timedelta(hours=41)),
        ("minutes(90)", timedelta(minutes=90)),
        ("days(profile.name)", None),
        ("days(true)", None),
        ("days(99999999999)", None),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    result = evaluate(source)
    assert result == expected
    assert type(result) is type(expected)


def test_functions_lists_exactly_the_callable_names() -> None:
    assert set(FUNCTIONS) == {
        "duration",
        "timestamp",
        "lower",
        "upper",
        "len",
        "abs",
        "min",
        "max",
        "round",
        "exists",
        "days",
        "hours",
        "minutes",
        "hour",
        "weekday",
        "date",
        "is_anniversary",
    }
    for name, description in FUNCTIONS.items():
        assert description.startswith(name)
        assert "\n" not in description
    with pytest.raises(TypeError):
        FUNCTIONS["eval"] = "no"  # type: ignore[index]


def test_every_function_can_be_called_with_its_documented_arity() -> None:
    for name, description in FUNCTIONS.items():
        arity = description.split(")")[0].count(",") + 1
        arguments = ", ".join(["profile.missing"] * arity)
        assert evaluate(f"{name}({arguments})") in (None, False)


@pytest.mark.parametrize(
    ("source", "column", "fragment"),
    [
        ('duration("2x")', 10, "'2x' is not a duration"),
        ("now + duration('soon')", 16, "'soon' is not a duration"),
        ("duration(5)", 10, "5 is not a duration"),
        ('timestamp("yesterday")', 11, "not an ISO 8601 timestamp"),
        ("timestamp(1700000000)", 11, "not an ISO 8601 timestamp"),
    ],
)
def test_bad_literal_arguments_are_compile_errors(source: str, column: int, fragment: str) -> None:
    error = compile_error(source)
    assert error.column == column
    assert fragment in error.message


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "column", "fragments"),
    [
        ("profle.plan", 1, ["unknown name 'profle'", "did you mean 'profile'", "journey"]),
        ("plan == 'pro'", 1, ["unknown name 'plan'", "profile, account, event, entry, journey"]),
        ("event.x == True", 12, ["unknown name 'True'", "write true"]),
        ("None", 1, ["write null"]),
        ("lower", 1, ["'lower' is a function", "lower(...)"]),
        ("event.plan = 'pro'", 12, ["use '=='"]),
        ("event.x && event.y", 9, ["use 'and'"]),
        ("event.x || event.y", 9, ["use 'or'"]),
        ("event.x & event.y", 9, ["use 'and'"]),
        ("!event.x", 1, ["use 'not'"]),
        ("event.x <> 1", 9, ["use '!='"]),
        ('event.plan == "pro', 15, ["unterminated string"]),
        ("'abc\\'", 1, ["unterminated string"]),
        ('"\\q"', 2, ["unknown escape '\\q'"]),
        ("event.x @ 1", 9, ["unexpected character '@'"]),
        ("", 1, ["expected an operand, found the end"]),
        ("1 +", 4, ["expected an operand, found the end"]),
        ("event.x == )", 12, ["expected an operand, found ')'"]),
        ("event.x and or", 13, ["expected an operand, found 'or'"]),
        ("1 == not true", 6, ["expected an operand, found 'not'"]),
        ("(1 + 2", 7, ["expected ')', found the end"]),
        ("(1 + 2]", 7, ["expected ')', found ']'"]),
        ("[1, 2", 6, ["expected ',' or ']'"]),
        ("lower(event.x", 14, ["expected ',' or ')'"]),
        ("event.x[1", 10, ["expected ']'"]),
        ("event.", 7, ["expected a field name"]),
        ("event.1", 7, ["expected a field name, found '1'"]),
        ("event.x event.y", 9, ["unexpected 'event' after a complete expression"]),
        ("1 2", 3, ["unexpected '2'", "such as 'and'"]),
        ("event.x AND event.y", 9, ["unexpected 'AND'", "keywords are lower case"]),
        ("1 < 2 > 3", 7, ["cannot be chained"]),
        ("1 == 1 != 2", 8, ["cannot be chained"]),
        ("'a' in ['a'] in [true]", 14, ["cannot be chained"]),
        ("lenght(event.x)", 1, ["unknown function 'lenght'", "did you mean 'len'"]),
        ("open('x')", 1, ["unknown function 'open'", "duration, timestamp"]),
        ("lower(1, 2)", 1, ["lower() takes 1 argument, got 2"]),
        ("min(1)", 1, ["min() takes 2 arguments, got 1"]),
        ("exists()", 1, ["exists() takes 1 argument, got 0"]),
    ],
)
def test_compile_errors_name_the_problem_and_its_column(
    source: str, column: int, fragments: list[str]
) -> None:
    error = compile_error(source)
    assert (error.column, error.source) == (column, source)
    assert str(error) == f"column {column}: {error.message}"
    for fragment in fragments:
        assert fragment in error.message


def test_columns_count_characters_across_lines() -> None:
    error = compile_error("event.x == 1 and\n  profle.y")
    assert error.column == 20


def test_expression_errors_survive_pickling() -> None:
    error = compile_error("profle.plan")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.column, copy.source) == (error.message, 1, "profle.plan")
    assert str(copy) == str(error)


def test_a_source_that_is_not_text_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="must be text"):
        compile_expression(True)  # type: ignore[arg-type]


# --- sandbox and limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("_x", 1),
        ("profile._secret", 9),
        ("profile.__class__", 9),
        ("profile.__class__.__bases__", 9),
        ("event.x.__dict__", 9),
        ('__import__("os")', 1),
        ("_private(1)", 1),
    ],
)
def test_names_starting_with_an_underscore_are_refused(source: str, column: int) -> None:
    error = compile_error(source)
    assert error.column == column
    assert "cannot start with '_'" in error.message


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("profile.plan()", 13),
        ("profile.plan.upper()", 19),
        ("event.items[0]()", 15),
        ("(lower)('x')", 2),
        ("now()", 1),
        ("profile('x')", 1),
        ("lower('x')('y')", 11),
    ],
)
def test_only_functions_can_be_called(source: str, column: int) -> None:
    error = compile_error(source)
    assert error.column == column


@pytest.mark.parametrize(
    "source",
    ['open("x")', 'eval("1")', 'exec("1")', "getattr(profile, 'plan')", "print(1)", "type(1)"],
)
def test_python_builtins_are_not_functions(source: str) -> None:
    assert "unknown function" in compile_error(source).message


def test_the_call_error_names_what_was_called() -> None:
    assert "'profile.plan' cannot be called" in compile_error("profile.plan()").message


def test_sources_up_to_2000_characters_compile() -> None:
    source = "event.total == 1" + " " * 1984
    assert len(source) == 2000
    assert compile_expression(source).evaluate(SCOPE) is False


def test_longer_sources_are_refused() -> None:
    error = compile_error("1" + " " * 2000)
    assert error.column == 2001
    assert "longer than 2000 characters" in error.message


@pytest.mark.parametrize(
    ("template", "deepest_allowed"),
    [
        ("({})", 49),
        ("[{}]", 49),
        ("not {}", 49),
        ("-{}", 49),
        ("lower({})", 49),
        ("{}.a", 49),
        ("{} + 1", 49),
    ],
)
def test_nesting_is_limited_to_50_levels(template: str, deepest_allowed: int) -> None:
    def nest(levels: int) -> str:
        source = "profile"
        for _ in range(levels):
            source = template.format(source)
        return source

    assert isinstance(compile_expression(nest(deepest_allowed)), Expression)
    assert "nests more than 50 levels" in compile_error(nest(deepest_allowed + 1)).message


def test_long_lists_of_conditions_do_not_count_as_nesting() -> None:
    source = " and ".join(f"event.total > {n}" for n in range(80))
    assert compile_expression(source).evaluate(SCOPE) is True


def test_generated_code_compiles_without_warnings() -> None:
    sources = [
        "true == 1",
        "null == [1]",
        "1 == null",
        "'a' == null",
        "1 in [1]",
        "now - days(1)",
        "-1.5 < 2",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for source in sources:
            compile_expression(source)


# --- the Expression object -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "paths"),
    [
        (
            'profile.plan == "pro" and event.total > 100 and "vip" in profile.tags',
            {("profile", "plan"), ("event", "total"), ("profile", "tags")},
        ),
        ("event.cart_id == entry.cart_id", {("event", "cart_id"), ("entry", "cart_id")}),
        ("now - entry.timestamp > duration('2d')", {("now",), ("entry", "timestamp")}),
        ('profile["first name"].x', {("profile", "first name", "x")}),
        ("event.items[0].sku", {("event", "items")}),
        ("profile[event.key].x", {("profile",), ("event", "key")}),
        ("profile.a.b or profile.a", {("profile", "a", "b"), ("profile", "a")}),
        ("lower(journey.name)", {("journey", "name")}),
        ("1 + 2", set()),
    ],
)
def test_paths_lists_every_static_field_path_read(source: str, paths: set[tuple[str, ...]]) -> None:
    assert compile_expression(source).paths == frozenset(paths)


def test_expressions_are_immutable_values() -> None:
    expression = compile_expression("event.total > 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.source = "true"  # type: ignore[misc]
    assert expression == compile_expression("event.total > 1")
    assert hash(expression) == hash(compile_expression("event.total > 1"))
    assert expression != compile_expression("event.total > 2")
    assert "event.total > 1" in repr(expression)


# --- evaluate never raises -------------------------------------------------------------


class ExplodingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


def _deeply_nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


ODD_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    float("inf"),
    float("nan"),
    10**40,
    True,
    "",
    "pro",
    "2026-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    [],
    ["a", "b"],
    [None, [None, [None]]],
    {"plan": None},
    {"plan": {"plan": []}},
    {"tags": "vip", "total": "150", "items": {"0": 1}},
    (1, 2),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    datetime.max,
    date(2026, 1, 1),
    timedelta.max,
    timedelta.min,
    b"bytes",
    object(),
    ExplodingMapping(),
    _deeply_nested(5000),
]
ODD_SCOPES: list[Mapping[str, Any]] = [
    {},
    *(
        dict.fromkeys(("profile", "event", "entry", "journey", "now"), value)
        for value in ODD_VALUES
    ),
    {"profile": ["a", "b"], "event": [None], "now": "not a time"},
    {"profile": {"tags": 5, "plan": 1, "address": "Paris"}, "event": {"total": None}},
    ExplodingMapping(),
]
EXPRESSIONS = [
    'profile.plan == "pro" and event.total > 100 and "vip" in profile.tags',
    "event.plan != 'internal' or not entry.cart_id",
    "now - entry.timestamp > duration('2d')",
    "entry.appointment_at - duration('1d')",
    "profile.tags[0].x[-1][profile.key] contains event.plan",
    "event == profile and event != entry and profile in [event, entry]",
    "profile < event or profile >= now or event <= 1 or entry > 'a'",
    "-profile + event * entry / journey % now - 1",
    "profile + now - event + duration('1h') * profile",
    "lower(profile) + upper(event) == len(entry)",
    "abs(profile) == round(event) or min(profile, now) == max(event, entry)",
    "exists(profile.a.b) and days(profile) + hours(event) + minutes(entry) > now",
    "timestamp(profile) < timestamp(event)",
    "duration(profile) == duration(event)",
    "event in profile or profile.tags contains profile.plan or event not in entry",
    "profile[event] == entry[journey]",
]


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_evaluate_never_raises_for_odd_data(source: str) -> None:
    expression = compile_expression(source)
    for scope in ODD_SCOPES:
        expression.evaluate(scope)
        assert expression.test(scope) in (True, False)


def test_a_scope_that_raises_gives_null() -> None:
    assert compile_expression("profile.plan").evaluate(ExplodingMapping()) is None
    assert compile_expression("profile.plan").test(ExplodingMapping()) is False


def test_values_from_a_raising_mapping_give_null() -> None:
    scope = {"profile": ExplodingMapping()}
    assert evaluate("profile.plan == 'pro'", scope) is None
    assert compile_expression("profile.plan == 'pro'").test(scope) is False
