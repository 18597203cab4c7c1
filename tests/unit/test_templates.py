from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import liquid
import pytest

from journeyman.domain.templates import Template, TemplateError, compile_template

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def scope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "profile": {"id": "p-1", "firstName": "Ada", "plan": "pro"},
        "event": {"event": "order_completed", "properties": {"total": 42}},
        "entry": {"cart_id": "c-9", "items": [{"name": "Lamp"}, {"name": "Desk"}]},
        "journey": {"name": "welcome", "version": 3},
        "now": NOW,
    }
    return {**base, **overrides}


def render(source: str, **overrides: Any) -> str:
    return compile_template(source).render(scope(**overrides))


def compile_error(source: str) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_template(source)
    return info.value


# Rendering


def test_renders_profile_event_entry_and_journey() -> None:
    source = (
        "Dear {{ profile.firstName }}, cart {{ entry.cart_id }}, "
        "total {{ event.properties.total }}, {{ journey.name }} v{{ journey.version }}"
    )
    assert render(source) == "Dear Ada, cart c-9, total 42, welcome v3"


def test_missing_trait_renders_empty() -> None:
    assert render("Hi {{ profile.lastName }}!") == "Hi !"


def test_default_filter_replaces_missing_and_empty_traits() -> None:
    source = "Hi {{ profile.firstName | default: 'there' }}, thank you for signing up!"
    assert render(source, profile={"id": "p-1"}) == "Hi there, thank you for signing up!"
    assert render(source, profile={"firstName": ""}) == "Hi there, thank you for signing up!"
    assert render(source) == "Hi Ada, thank you for signing up!"


def test_nested_missing_path_renders_empty() -> None:
    assert render("[{{ profile.address.city }}]") == "[]"
    assert render("[{{ profile.address.city | default: 'your city' }}]") == "[your city]"


def test_absent_message_renders_empty() -> None:
    assert render("[{{ message.subject }}]") == "[]"


def test_if_and_for() -> None:
    source = (
        "{% if profile.plan == 'pro' %}Pro{% else %}Free{% endif %}:"
        "{% for item in entry.items %}{{ forloop.index }}.{{ item.name }} {% endfor %}"
    )
    assert render(source) == "Pro:1.Lamp 2.Desk "
    assert render(source, profile={"plan": "free"}, entry={}) == "Free:"


def test_standard_filters() -> None:
    source = "{{ profile.firstName | upcase }} {{ entry.items | map: 'name' | join: ', ' }}"
    assert render(source) == "ADA Lamp, Desk"


def test_date_filter_formats_a_scope_datetime() -> None:
    assert render("{{ now | date: '%Y-%m-%d %H:%M' }}") == "2026-01-05 09:30"


def test_date_filter_reads_now_from_the_scope_not_the_wall_clock() -> None:
    assert render("{{ 'now' | date: '%Y-%m-%d' }}") == "2026-01-05"


def test_date_filter_reads_epoch_seconds_as_utc() -> None:
    assert render("{{ 86400 | date: '%Y-%m-%d %H:%M' }}") == "1970-01-02 00:00"


def test_variable_output_is_not_escaped_by_default() -> None:
    assert render("<p>{{ profile.firstName }}</p>", profile={"firstName": "<b>A</b>"}) == (
        "<p><b>A</b></p>"
    )


def test_escape_opt_in_escapes_variable_output_only() -> None:
    template = compile_template("<p>{{ profile.firstName }}</p>", escape=True)
    assert template.render(scope(profile={"firstName": "<b>A&B</b>"})) == (
        "<p>&lt;b&gt;A&amp;B&lt;/b&gt;</p>"
    )


def test_a_template_renders_the_same_twice() -> None:
    template = compile_template("{% assign n = profile.firstName %}{% cycle 'a', 'b' %}{{ n }}")
    assert template.render(scope()) == template.render(scope()) == "aAda"


# Compile errors


def test_template_error_message_names_line_and_column() -> None:
    err = compile_error("Hi {% bogus %}")
    assert (err.line, err.column) == (1, 7)
    assert err.message == "unexpected tag 'bogus'"
    assert str(err) == "line 1, column 7: unexpected tag 'bogus'"


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        ("{{ 'abc }}", 1, 4),  # unterminated string
        ("{{ a b }}", 1, 6),  # extra word after the expression
        ("{{ x }", 1, 1),  # output never closed
        ("Hi {{ profile. }}", 1, 15),  # path ends after the dot
        ("<p>\n  {{ profile.firstName | }}\n</p>", 2, 25),  # filter name missing
        ("<p>\n\n  {% for x in %}{% endfor %}\n</p>", 3, 14),  # loop target missing
        ("a\n{% if profile.plan == %}x{% endif %}", 2, 22),  # right operand missing
        ("{% if a %}\n  <p>\n    {{ b | }}\n  </p>\n{% endif %}", 3, 11),  # inside a block
        ("a\n  b {% endif %}", 2, 8),  # closing a block that was never opened
    ],
)
def test_syntax_error_points_at_line_and_column(source: str, line: int, column: int) -> None:
    err = compile_error(source)
    assert (err.line, err.column) == (line, column), str(err)


def test_unclosed_block_is_reported_at_the_end_of_the_template() -> None:
    err = compile_error("<p>\n{% if profile.plan %}\nPro</p>")
    assert (err.line, err.column) == (3, 8)
    assert err.message == "expected tag endif, found end of template"


def test_unknown_filter_is_a_compile_error_at_the_filter() -> None:
    err = compile_error("<p>\n  {{ profile.firstName | shout }}\n</p>")
    assert err.message == "unknown filter 'shout'"
    assert (err.line, err.column) == (2, 26)


def test_filter_names_are_case_sensitive() -> None:
    assert compile_error("{{ profile.firstName | Upcase }}").message == "unknown filter 'Upcase'"


@pytest.mark.parametrize(
    ("source", "tag", "line", "column"),
    [
        ("a {% include 'footer' %}", "include", 1, 6),
        ("a\n{% render 'footer', name: profile.firstName %}", "render", 2, 4),
        ("{% liquid\n  assign x = 1\n  include 'footer' %}", "include", 3, 3),
    ],
)
def test_include_and_render_are_compile_errors(
    source: str, tag: str, line: int, column: int
) -> None:
    err = compile_error(source)
    assert err.message == f"the '{tag}' tag is not supported: templates cannot load templates"
    assert (err.line, err.column) == (line, column)


# Static analysis


def test_paths_list_global_reads_without_loop_variables_or_locals() -> None:
    template = compile_template(
        "{% assign greeting = profile.firstName | default: 'there' %}"
        "{% capture total %}{{ event.properties.total }}{% endcapture %}"
        "Hi {{ greeting }}, {{ total }}: "
        "{% for item in entry.items %}{{ item.name }} {{ forloop.index }}{% endfor %}"
        "{{ now | date: '%Y' }}"
    )
    assert template.paths == {
        ("profile", "firstName"),
        ("event", "properties", "total"),
        ("entry", "items"),
        ("now",),
    }


def test_paths_stop_at_an_index_or_a_computed_segment() -> None:
    template = compile_template("{{ entry.items[0].name }} {{ profile[event.trait].label }}")
    assert template.paths == {("entry", "items"), ("profile",), ("event", "trait")}


def test_template_keeps_its_source() -> None:
    template = compile_template("Hi {{ profile.firstName }}")
    assert isinstance(template, Template)
    assert template.source == "Hi {{ profile.firstName }}"


# Limits and robustness


def test_loop_limit_stops_a_runaway_loop_without_raising() -> None:
    source = "a{% for i in (1..100000) %}x{% endfor %}b {{ profile.firstName }}"
    assert render(source) == "ab Ada"


def test_loop_limit_counts_nested_loops_together() -> None:
    source = "a{% for i in (1..200) %}{% for j in (1..200) %}x{% endfor %}{% endfor %}b"
    assert render(source) == "ab"


def test_a_loop_within_the_limit_runs() -> None:
    assert render("{% for i in (1..10000) %}x{% endfor %}") == "x" * 10000


def test_output_limit_stops_runaway_output_without_raising() -> None:
    source = "{% for i in (1..5000) %}{{ entry.blob }}{% endfor %}"
    assert render(source, entry={"blob": "x" * 1000}) == ""


def test_output_within_the_limit_is_kept_before_a_runaway_statement() -> None:
    source = "start {% for i in (1..5000) %}{{ entry.blob }}{% endfor %}"
    assert render(source, entry={"blob": "x" * 1000}) == "start "


def test_namespace_limit_stops_a_growing_assign_without_raising() -> None:
    source = (
        "{% assign s = 'xxxxxxxxxxxxxxxx' %}"
        "{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}"
        "{{ s | size }}"
    )
    assert int(render(source)) <= 2_000_000


def test_a_filter_refuses_a_huge_range_without_raising() -> None:
    assert render("a{{ (1..1000000000) | join: ',' }}b") == "ab"
    assert render("{{ (1..10000) | size }}") == "10000"


def test_a_chain_of_filters_cannot_grow_a_string_without_bound() -> None:
    ten = "'aaaaaaaaaa'"
    source = "{{ " + ten + f" | replace: 'a', {ten}" * 9 + " }}end"
    assert render(source) == "end"


# Each of these took liquid's own lexer from minutes to hours (its time grows with the
# square of the length): openings never closed, and long whitespace inside a delimiter.
@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{" * 200_000, "expected '}}'"),
        ("{% comment %}" + "{{" * 100_000, "comment tag was never closed"),
        ("{% comment %}" + "{%a" * 60_000, "comment tag was never closed"),
        ("{% raw %}" * 30_000, "unexpected tag 'raw'"),
        ("{% doc %}" * 30_000, "nested doc tags"),
        ("{{ a }}" + "{% raw %}{{" * 20_000, "expected '}}'"),
        ("{{" + " " * 200_000 + "}}", "expected a primitive expression"),
        ("{% if" + " " * 200_000 + "%}{% endif %}", "missing expression"),
    ],
)
def test_a_long_template_that_never_closes_is_refused_without_stalling(
    source: str, fragment: str
) -> None:
    assert fragment in compile_error(source).message


def test_a_long_whitespace_run_inside_a_tag_compiles_without_stalling() -> None:
    source = "{% echo" + " " * 200_000 + "profile.firstName" + "\n" * 200_000 + "%}"
    assert compile_template(source).render(scope()) == "Ada"


@pytest.mark.parametrize("escape", [False, True])
def test_a_number_too_long_to_write_renders_empty_and_the_rest_renders(escape: bool) -> None:
    template = compile_template("Hi {{ profile.n }}, {{ profile.firstName }}", escape=escape)
    assert template.render({"profile": {"n": 10**5000, "firstName": "Ada"}}) == "Hi , Ada"


def test_a_failing_statement_renders_empty_and_the_rest_renders() -> None:
    source = "a{{ event.properties.total | divided_by: 0 }}b{{ profile.firstName }}"
    assert render(source) == "abAda"


class _Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no string for you")

    def __getitem__(self, key: object) -> object:
        raise RuntimeError("no items either")


ODD_SCOPES: list[dict[str, Any]] = [
    {},
    {"profile": None, "event": None, "entry": None, "journey": None, "now": None},
    {"profile": [1, 2], "event": ["a"], "entry": "a string", "journey": 7, "now": "soon"},
    {"profile": {"firstName": ["Ada"], "tags": {"a": 1}}, "entry": {"items": "Lamp"}},
    {"profile": {"tags": [1, "a", None, {"name": 3}]}, "event": {"properties": []}},
    {"profile": _Hostile(), "event": _Hostile(), "now": _Hostile()},
    {"profile": {"firstName": object()}, "entry": {"items": [object()]}},
]


@pytest.mark.parametrize("data", ODD_SCOPES)
def test_render_never_raises_on_odd_scope_data(data: dict[str, Any]) -> None:
    template = compile_template(
        "{{ profile.firstName | default: 'there' | upcase }} {{ profile.address.city }}"
        "{% for t in profile.tags %}{{ t.name }}{% endfor %}"
        "{{ profile.tags | sort | join: ',' }} {{ entry.items | map: 'name' | first }}"
        "{{ event.properties.total | plus: 1 }} {{ event | size }} {{ journey.name }}"
        "{% if profile.plan == 'pro' and event.properties.total > 10 %}big{% endif %}"
        "{{ now | date: '%Y' }} {{ profile }}."
    )
    assert template.render(data).endswith(".")


@pytest.mark.parametrize("data", [None, [1, 2], "profile"])
def test_render_never_raises_when_the_scope_is_not_a_mapping(data: Any) -> None:
    assert compile_template("a{{ profile.firstName }}b").render(data) == "ab"


PLAIN_SOURCES = [
    "Hi {{ profile.firstName | default: 'there' }}, thanks!",
    "{{ entry.email }}",
    'Dear {{ profile.firstName | default: "a & b <x>" }} {{ entry.plan }}.',
    "{{ profile.size }} {{ profile.first }} {{ profile.last }}",
    "{{profile.n}}-{{ profile.missing.deep }}-{{ event.x | default: '' }}",
    "{{ profile.flag }} {{ profile.flag | default: 'no' }}",
    "{{ profile.list }}{{ profile.f }} {{ profile }}",
]
PLAIN_VALUES: list[Any] = [None, "", "Ann", "<b>&'\"", 0, 7, 10**30, True, False, 1.5, [], [1, 2]]


@pytest.mark.parametrize("escape", [False, True])
@pytest.mark.parametrize("source", PLAIN_SOURCES)
def test_text_with_plain_outputs_renders_exactly_as_liquid_does(source: str, escape: bool) -> None:
    """Plain outputs take a fast path of their own: it must never change the output."""
    oracle = liquid.Environment(autoescape=escape).from_string(source)
    template = compile_template(source, escape=escape)
    values = itertools.cycle(PLAIN_VALUES)
    for skip in range(len(PLAIN_VALUES) * 3):
        keys = ["firstName", "n", "flag", "list", "f", "size", "first", "missing"]
        profile = {key: next(values) for i, key in enumerate(keys) if (i + skip) % 4}
        data = {"profile": profile, "entry": {"email": next(values), "plan": next(values)}}
        data["event"] = {"x": next(values)}
        assert template.render(data) == oracle.render(**data), data
