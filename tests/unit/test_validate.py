"""`journeyman validate`: every problem of a workspace as `file:line: kind name: message`.

Most tests load BASE (written to doc00.yaml) and their own documents (doc01.yaml, ...) and
compare whole problem lines, so that the file, the line, the `kind name:` prefix and the
message are all checked at once.
"""

from __future__ import annotations

import copy
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.domain.checks import build_workspace
from journeyman.domain.documents import Document, read_documents
from journeyman.domain.model import Workspace
from journeyman.domain.parse import parse_documents
from journeyman.domain.problems import Problem
from journeyman.workspace import Loaded, load_workspace
from tests.conftest import BASE, write_workspace

Load = Callable[..., Loaded]
Problems = Callable[..., list[str]]


@pytest.fixture
def problems(tmp_path: Path) -> Problems:
    """Every problem, as printed, of BASE plus the given documents (doc01.yaml onwards).

    Unlike ``load``, each call reads a folder of its own, so one test can compare several.
    """
    folders = (tmp_path / f"ws{n}" for n in range(1000))

    def run(*documents: str) -> list[str]:
        folder = write_workspace(next(folders), BASE, *documents)
        return [str(problem) for problem in load_workspace(folder).problems]

    return run


def journey(steps: str, name: str = "j", **keys: str) -> str:
    """A journey entered by signed_up; its steps start on line 5, other ``keys`` follow."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    tail = "".join(f"{key}: {value}\n" for key, value in keys.items())
    return f"kind: journey\nname: {name}\nentry: {{event: signed_up}}\nsteps:\n{body}\n{tail}"


# A sound workspace


def test_base_with_a_journey_is_sound_with_no_problem(load: Load) -> None:
    loaded = load(BASE, journey("- id: hi\n  send: hello_email\n- id: done\n  end: greeted"))
    assert loaded.problems == []
    assert loaded.workspace is not None
    assert list(loaded.workspace.journeys) == ["j"]


def test_an_event_name_may_be_any_text(problems: Problems) -> None:
    event = "kind: event\nname: Order Completed\n"
    flow = journey("- id: wait\n  wait_for: {event: Order Completed}")
    assert problems(event, flow) == []


def test_the_same_name_in_two_kinds_is_not_a_duplicate(problems: Problems) -> None:
    template = "kind: template\nname: j\nchannel: sms\nbody: hi\n"
    assert problems(template, journey("- id: j\n  send: j")) == []


# YAML and documents


def test_a_yaml_syntax_error_names_the_file_and_line(problems: Problems) -> None:
    text = "kind: event\nname: e\nschema:\n  type: object\n   extra: 1\n"
    assert problems(text) == [
        "doc01.yaml:5: YAML error: mapping values are not allowed in this context"
    ]


def test_a_yaml_error_in_one_file_does_not_hide_problems_in_another(problems: Problems) -> None:
    yaml_error, other = problems("a: [\n", journey("- id: a\n  send: nope"))
    assert yaml_error.startswith("doc01.yaml:2: YAML error: while parsing a flow ")
    assert other == "doc02.yaml:6: journey j: step a: template 'nope' is not defined"


def test_a_duplicate_key_is_a_yaml_error(problems: Problems) -> None:
    text = journey("- id: a\n  wait: 1h\n  wait: 2h")
    assert problems(text) == [
        "doc01.yaml:7: YAML error: duplicate key 'wait' (first written on line 6)"
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("- a\n- b\n", "a list"),
        ("42\n", "a number"),
        ("hello\n", "a string"),
        ("true\n", "a boolean"),
    ],
)
def test_a_document_must_be_a_mapping(problems: Problems, text: str, found: str) -> None:
    assert problems(text) == [
        f"doc01.yaml:1: a document must be a mapping with a 'kind', not {found}"
    ]


def test_a_document_needs_a_kind(problems: Problems) -> None:
    assert problems("name: x\n") == [
        "doc01.yaml:1: a document needs a 'kind': one of event, template, action, journey, "
        "rules, settings, channel, test, subscription, segment"
    ]


def test_an_unknown_kind_suggests_the_closest(problems: Problems) -> None:
    assert problems("name: x\nkind: jouney\n") == [
        "doc01.yaml:2: 'kind' must be one of event, template, action, journey, rules, settings, "
        "channel, test, subscription, segment, not 'jouney' (did you mean 'journey'?)"
    ]


def test_an_empty_document_after_a_final_separator_is_ignored(problems: Problems) -> None:
    assert problems("kind: event\nname: e\n---\n") == []


def test_lines_count_from_the_top_of_a_file_with_several_documents(problems: Problems) -> None:
    text = "kind: event\nname: e\n---\n" + journey("- id: a\n  send: nope")
    assert problems(text) == ["doc01.yaml:9: journey j: step a: template 'nope' is not defined"]


def test_files_are_named_from_the_workspace_folder_and_hidden_folders_are_skipped(
    tmp_path: Path,
) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "journeys" / "welcome.yml").write_text("kind: journey\nname: 1\n")
    (tmp_path / ".git" / "broken.yaml").write_text("a: [\n")
    (tmp_path / "notes.txt").write_text("a: [\n")
    loaded = load_workspace(tmp_path)
    assert [str(p) for p in loaded.problems] == [
        "journeys/welcome.yml:2: journey: 'name' must be a name of letters, digits, '_' and '-' "
        "starting with a letter, not 1"
    ]


def test_a_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"kind: event\nname: \xff\n")
    (problem,) = load_workspace(tmp_path).problems
    assert str(problem).startswith("bad.yaml:1: cannot read the file: 'utf-8' codec can't decode")


def test_a_folder_without_yaml_files_is_a_problem(tmp_path: Path) -> None:
    loaded = load_workspace(tmp_path)
    assert [str(p) for p in loaded.problems] == [
        f"{tmp_path.as_posix()}:1: no .yaml files in this folder"
    ]
    assert loaded.workspace is None


# Names and duplicates


@pytest.mark.parametrize("kind", ["journey", "template", "action"])
def test_a_document_needs_a_name(problems: Problems, kind: str) -> None:
    article = "an" if kind == "action" else "a"
    assert problems(f"kind: {kind}\n") == [f"doc01.yaml:1: {kind}: {article} {kind} needs a 'name'"]


def test_an_event_needs_a_name(problems: Problems) -> None:
    assert problems("kind: event\n") == ["doc01.yaml:1: event: an event needs a 'name'"]


def test_a_test_needs_a_name_that_says_what_it_checks(problems: Problems) -> None:
    assert problems("kind: test\nname: ' '\nevents: []\nexpect: []\n") == [
        "doc01.yaml:2: test: a test needs a 'name' that says what it checks"
    ]


@pytest.mark.parametrize("name", ["'my journey'", "9lives", "a.b", "[a]", "{a: 1}", "true"])
def test_a_journey_name_is_letters_digits_underscores_and_dashes(
    problems: Problems, name: str
) -> None:
    (line,) = problems(f"kind: journey\nname: {name}\n")
    assert line.startswith("doc01.yaml:2: journey")
    assert "'name' must be a name of letters, digits, '_' and '-' starting with a letter" in line


def test_a_duplicate_journey_name_points_at_the_first_definition(problems: Problems) -> None:
    flow = journey("- id: a\n  end: x")
    assert problems(flow, flow) == [
        "doc02.yaml:2: journey j: duplicate journey name (first defined at doc01.yaml:1)"
    ]


def test_a_duplicate_template_name_is_an_error(problems: Problems) -> None:
    assert problems("kind: template\nname: hello_sms\nchannel: sms\nbody: again\n") == [
        "doc01.yaml:2: template hello_sms: duplicate template name (first defined at doc00.yaml:27)"
    ]


def test_the_problems_inside_a_duplicate_are_reported_too(problems: Problems) -> None:
    flow = journey("- id: a\n  end: x")
    assert problems(flow, flow.replace("end: x", "wait: 2 days")) == [
        "doc02.yaml:2: journey j: duplicate journey name (first defined at doc01.yaml:1)",
        "doc02.yaml:6: journey j: step a: 'wait': '2 days' is not a duration: use a number and "
        "a unit s, m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
    ]


def test_a_duplicate_test_name_is_an_error(problems: Problems) -> None:
    test = "kind: test\nname: it works\nevents: []\nexpect: []\n"
    assert problems(test, test) == [
        "doc02.yaml:2: test it works: duplicate test name (first defined at doc01.yaml:1)"
    ]


def test_a_duplicate_step_id_is_an_error(problems: Problems) -> None:
    flow = journey("- id: a\n  wait: 1h\n- id: a\n  end: x")
    assert problems(flow) == ["doc01.yaml:7: journey j: duplicate step id 'a'"]


def test_two_rules_documents_need_names_but_named_ones_may_coexist(problems: Problems) -> None:
    rules = "kind: rules\ncaps: [{max: 1, per: 1d}]\n"
    assert problems(rules, rules) == [
        "doc02.yaml:1: rules: give each rules document a 'name' (another is at doc01.yaml:1)"
    ]
    assert problems(rules, "name: sms\n" + rules) == []


def test_a_workspace_has_one_settings_document(problems: Problems) -> None:
    assert problems("kind: settings\n", "kind: settings\nname: more\ntraits: [plan]\n") == [
        "doc02.yaml:1: settings more: a workspace has one settings document "
        "(the first is at doc01.yaml:1)"
    ]


# Unknown keys


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            journey("- id: a\n  end: x", timout="1d"),
            "doc01.yaml:7: journey j: unknown key 'timout' in the document "
            "(did you mean 'timeout'?)",
        ),
        (
            journey("- id: a\n  end: x").replace("signed_up", "signed_up, wen: 'true'"),
            "doc01.yaml:3: journey j: unknown key 'wen' in 'entry' (did you mean 'when'?)",
        ),
        (
            journey("- id: a\n  wait_for: {event: purchased, timeout: 1d}\n  on_timout: a"),
            "doc01.yaml:7: journey j: step a: unknown key 'on_timout' in a wait_for step "
            "(did you mean 'on_timeout'?)",
        ),
        (
            journey("- id: a\n  wait_for:\n    event: purchased\n    timeot: 1d"),
            "doc01.yaml:8: journey j: step a: unknown key 'timeot' in 'wait_for' "
            "(did you mean 'timeout'?)",
        ),
        (
            journey("- id: a\n  send: hello_sms\n  on_eror: a"),
            "doc01.yaml:7: journey j: step a: unknown key 'on_eror' in a send step "
            "(did you mean 'on_error'?)",
        ),
        (
            journey("- id: a\n  end: x\n  next: a"),
            "doc01.yaml:7: journey j: step a: unknown key 'next' in an end step",
        ),
        (
            journey("- id: a\n  update_profile: {sett: {a: 1}, unset: [b]}"),
            "doc01.yaml:6: journey j: step a: unknown key 'sett' in 'update_profile' "
            "(did you mean 'set'?)",
        ),
        (
            "kind: template\nname: t\nchannel: email\nsubjet: Hi\ntext: x\nsubject: Hi\n",
            "doc01.yaml:4: template t: unknown key 'subjet' in the document "
            "(did you mean 'subject'?)",
        ),
        (
            "kind: action\nname: a\nurl: https://x.example\nheader: {}\n",
            "doc01.yaml:4: action a: unknown key 'header' in the document "
            "(did you mean 'headers'?)",
        ),
        (
            "kind: event\nname: e\nshema: {}\n",
            "doc01.yaml:3: event e: unknown key 'shema' in the document (did you mean 'schema'?)",
        ),
        (
            "kind: rules\ncaps:\n  - max: 1\n    per: 1d\n    chanels: [sms]\n",
            "doc01.yaml:5: rules: unknown key 'chanels' in a cap (did you mean 'channels'?)",
        ),
        (
            "kind: rules\nquiet_hours: {from: '21:00', to: '08:00', actoin: drop}\n",
            "doc01.yaml:2: rules: unknown key 'actoin' in quiet hours (did you mean 'action'?)",
        ),
        (
            "kind: settings\ntimezones: UTC\n",
            "doc01.yaml:2: settings: unknown key 'timezones' in the document "
            "(did you mean 'timezone'?)",
        ),
        (
            "kind: test\nname: t\nevents: []\nexpect:\n  - ended: completed\n    time: 2\n",
            "doc01.yaml:6: test t: unknown key 'time' in an expectation (did you mean 'times'?)",
        ),
    ],
)
def test_an_unknown_key_is_an_error_with_a_suggestion(
    problems: Problems, text: str, expected: str
) -> None:
    assert expected in problems(text)


# Steps


def test_steps_must_be_a_list_of_at_least_one(problems: Problems) -> None:
    head = "kind: journey\nname: j\nentry: {event: signed_up}\n"
    assert problems(head + "steps: {}\n") == [
        "doc01.yaml:4: journey j: 'steps' must be a list, not a mapping"
    ]
    assert problems(head + "steps: []\n") == [
        "doc01.yaml:4: journey j: 'steps' must list at least one step"
    ]
    assert problems(head) == ["doc01.yaml:1: journey j: the document needs 'steps'"]


def test_a_step_must_be_a_mapping_with_an_id(problems: Problems) -> None:
    assert problems(journey("- 5\n- {end: x}\n- id: 1\n  end: y")) == [
        "doc01.yaml:5: journey j: a step must be a mapping with an 'id', not a number",
        "doc01.yaml:6: journey j: a step needs an 'id'",
        "doc01.yaml:7: journey j: a step's 'id' must be a name of letters, digits, '_' and '-' "
        "starting with a letter, not 1",
    ]


def test_a_step_needs_exactly_one_type(problems: Problems) -> None:
    types = "wait, wait_for, branch, split, experiment, send, call, update_profile, jump, end"
    assert problems(journey("- id: a\n- id: b\n  wait: 1h\n  end: x")) == [
        f"doc01.yaml:5: journey j: step a: a step needs exactly one of {types}; it has none",
        f"doc01.yaml:6: journey j: step b: a step needs exactly one of {types}; it has wait, end",
    ]


def test_goto_outside_a_branch_says_to_use_next(problems: Problems) -> None:
    flow = journey("- id: a\n  send: hello_sms\n  goto: b\n- id: b\n  end: x")
    assert problems(flow) == [
        "doc01.yaml:7: journey j: step a: use 'next' to name the step that follows"
    ]


def test_a_branch_or_split_has_no_next(problems: Problems) -> None:
    flow = journey("- id: a\n  split: [{weight: 1, goto: b}]\n  next: b\n- id: b\n  end: x")
    assert problems(flow) == ["doc01.yaml:7: journey j: step a: unknown key 'next' in a split step"]


# Mistyped fields: one line each, naming the field and the rule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            journey("- id: a\n  end: x", ignore_caps="'yes'"),
            "doc01.yaml:7: journey j: 'ignore_caps' must be true or false, not a string",
        ),
        (
            journey("- id: a\n  end: x", reentry="sometimes"),
            "doc01.yaml:7: journey j: 'reentry' must be never, always or 'after <duration>', "
            "not 'sometimes'",
        ),
        (
            journey("- id: a\n  end: x", exit="{event: deleted}"),
            "doc01.yaml:7: journey j: 'exit' must be a list, not a mapping",
        ),
        (
            "kind: journey\nname: j\nentry: signed_up\nsteps: [{id: a, end: x}]\n",
            "doc01.yaml:3: journey j: 'entry' must be a mapping, not a string",
        ),
        (
            journey("- id: a\n  wait: 5"),
            "doc01.yaml:6: journey j: step a: 'wait' must be a duration or a mapping, not a number",
        ),
        (
            journey("- id: a\n  wait: {}"),
            "doc01.yaml:6: journey j: step a: 'wait' needs a duration, 'until' or 'until_local'",
        ),
        (
            journey("- id: a\n  wait_for: purchased"),
            "doc01.yaml:6: journey j: step a: 'wait_for' must be a mapping, not a string",
        ),
        (
            journey("- id: a\n  branch: x"),
            "doc01.yaml:6: journey j: step a: 'branch' must be a list, not a string",
        ),
        (
            journey("- id: a\n  split: [{weight: -1, goto: a}]"),
            "doc01.yaml:6: journey j: step a: 'weight' must be a number of at least 0, not -1",
        ),
        (
            journey("- id: a\n  split: [{weight: .inf, goto: a}]"),
            "doc01.yaml:6: journey j: step a: 'weight' must be a number of at least 0, not inf",
        ),
        (
            journey("- id: a\n  split: [{weight: 0, goto: a}]"),
            "doc01.yaml:6: journey j: step a: a split needs at least one arm with a weight above 0",
        ),
        (
            journey("- id: a\n  send: [hello_sms]"),
            "doc01.yaml:6: journey j: step a: 'send' must be a name of letters, digits, '_' and "
            "'-' starting with a letter, not ['hello_sms']",
        ),
        (
            journey("- id: a\n  update_profile: {unset: [1]}"),
            "doc01.yaml:6: journey j: step a: 'unset' must be a list of trait names",
        ),
        (
            journey("- id: a\n  update_profile: {set: {id: x}}"),
            "doc01.yaml:6: journey j: step a: 'id' is the profile's key and cannot be set",
        ),
        (
            journey("- id: a\n  update_profile: {}"),
            "doc01.yaml:6: journey j: step a: 'update_profile' needs 'set' or 'unset'",
        ),
        (
            journey("- id: a\n  end: 'no way'"),
            "doc01.yaml:6: journey j: step a: an end state must be a name of letters, digits, "
            "'_' and '-' starting with a letter, not 'no way'",
        ),
        (
            "kind: event\nname: e\nidentity: phone\n",
            "doc01.yaml:3: event e: 'identity' must be one of userId, anonymousId, email, "
            "not 'phone'",
        ),
        (
            "kind: event\nname: e\nschema: [a]\n",
            "doc01.yaml:3: event e: 'schema' must be a JSON Schema mapping",
        ),
        (
            "kind: event\nname: e\nschema:\n  type: object\n  properties: {a: {type: text}}\n",
            "doc01.yaml:5: event e: 'schema' is not a valid JSON Schema: 'text' is not valid "
            "under any of the given schemas",
        ),
        (
            "kind: event\nname: e\nschema:\n  $ref: 'https://example.com/order.json'\n",
            "doc01.yaml:4: event e: '$ref' 'https://example.com/order.json' points to nothing in "
            "this schema",
        ),
        (
            "kind: event\nname: e\nschema:\n  properties:\n    a: {$ref: '#/$defs/missing'}\n",
            "doc01.yaml:5: event e: '$ref' '#/$defs/missing' points to nothing in this schema",
        ),
        (
            "kind: template\nname: t\nchannel: fax\n",
            "doc01.yaml:3: template t: 'channel' must be one of email, sms, push, webhook, "
            "not 'fax'",
        ),
        (
            "kind: template\nname: t\nchannel: email\ntext: x\n",
            "doc01.yaml:1: template t: an email template needs a 'subject'",
        ),
        (
            "kind: template\nname: t\nchannel: email\nsubject: x\n",
            "doc01.yaml:1: template t: an email template needs 'html' or 'text'",
        ),
        (
            "kind: template\nname: t\nchannel: push\ntitle: x\n",
            "doc01.yaml:1: template t: a push template needs a 'body'",
        ),
        (
            "kind: template\nname: t\nchannel: sms\nbody: [x]\n",
            "doc01.yaml:4: template t: 'body' must be a string, not a list",
        ),
        (
            "kind: template\nname: t\nchannel: sms\nbody: x\nsubject: y\n",
            "doc01.yaml:5: template t: unknown key 'subject' in the document",
        ),
        (
            "kind: action\nname: a\n",
            "doc01.yaml:1: action a: the document needs 'url'",
        ),
        (
            "kind: action\nname: a\nurl: https://x.example\nmethod: FETCH\n",
            "doc01.yaml:4: action a: 'method' must be one of GET, POST, PUT, PATCH, DELETE, "
            "not 'FETCH' (did you mean 'PATCH'?)",
        ),
        (
            "kind: action\nname: a\nurl: https://x.example\nmethod: ~\n",
            "doc01.yaml:4: action a: 'method' must be one of GET, POST, PUT, PATCH, DELETE, "
            "not None",
        ),
        (
            "kind: action\nname: a\nurl: https://x.example\nheaders: [a]\n",
            "doc01.yaml:4: action a: 'headers' must be a mapping, not a list",
        ),
        (
            "kind: rules\ncaps: [{max: -1, per: 1d}]\n",
            "doc01.yaml:2: rules: 'max' must be a whole number of at least 0, not -1",
        ),
        (
            "kind: rules\ncaps: [{max: 1, per: 1d, channels: [fax]}]\n",
            "doc01.yaml:2: rules: 'channels' must be one of email, sms, push, webhook, not 'fax'",
        ),
        (
            "kind: rules\ncaps: [{max: 1, per: 1d, channels: []}]\n",
            "doc01.yaml:2: rules: 'channels' must name at least one of email, sms, push, webhook",
        ),
        (
            "kind: rules\ncaps: {max: 1}\n",
            "doc01.yaml:2: rules: 'caps' must be a list, not a mapping",
        ),
        (
            "kind: rules\nquiet_hours: {to: '08:00'}\n",
            "doc01.yaml:2: rules: quiet hours needs 'from'",
        ),
        (
            "kind: rules\nquiet_hours: {from: '21:00', to: '08:00', action: skip}\n",
            "doc01.yaml:2: rules: 'action' must be one of defer, drop, not 'skip'",
        ),
        (
            "kind: settings\ntraits: [plan, 1]\n",
            "doc01.yaml:2: settings: 'traits' must be a list of trait names",
        ),
        (
            "kind: test\nname: t\nevents: [{at: 1s}]\nexpect: []\n",
            "doc01.yaml:3: test t: a test event needs exactly one of track, identify, page, "
            "screen, alias, group or a reaction (sent, delivered, failed, opened, clicked, "
            "bounced, complained, unsubscribed, resubscribed)",
        ),
        (
            "kind: test\nname: t\nevents: [{at: 1s, track: [x]}]\nexpect: []\n",
            "doc01.yaml:3: test t: 'track' must be a mapping, not a list",
        ),
        (
            "kind: test\nname: t\nevents: [{track: {}}]\nexpect: []\n",
            "doc01.yaml:3: test t: a test event needs 'at'",
        ),
        (
            "kind: test\nname: t\nevents: []\nexpect:\n  - {sent: [x]}\n",
            "doc01.yaml:5: test t: 'sent' must name what it expects, not ['x']",
        ),
        (
            "kind: test\nname: t\nevents: []\nexpect:\n  - {ended: completed, times: -1}\n",
            "doc01.yaml:5: test t: 'times' must be a whole number of at least 0, not -1",
        ),
        (
            "kind: test\nname: t\nevents: []\nexpect:\n  - {ended: completed, profile: [u1]}\n",
            "doc01.yaml:5: test t: 'profile' must be a string, not a list",
        ),
        (
            "kind: test\nname: t\nevents: []\nexpect:\n  - {ended: completed, sent: a}\n",
            "doc01.yaml:5: test t: an expectation needs exactly one of sent, ended, never, "
            "capped, skipped, deferred, dropped, entered, exited, timed_out, rejected, "
            "entered_segment, exited_segment, reached, variant, run",
        ),
        (
            "kind: test\nname: t\nevents: []\nexpect: []\nfail: [1]\n",
            "doc01.yaml:5: test t: 'fail' must be a list of steps (step or journey.step)",
        ),
    ],
)
def test_a_mistyped_field_names_the_field_and_the_rule(
    problems: Problems, text: str, expected: str
) -> None:
    assert expected in problems(text)


def test_a_missing_field_is_reported_once(problems: Problems) -> None:
    assert problems("kind: rules\ncaps: [{per: 1d}]\n") == [
        "doc01.yaml:2: rules: a cap needs 'max'"
    ]
    assert problems(journey("- id: a\n  split: [{weight: 1}]")) == [
        "doc01.yaml:6: journey j: step a: a split arm needs 'goto'",
        "doc01.yaml:6: journey j: step a: a split needs at least one arm with a weight above 0",
    ]


def test_a_journey_with_a_broken_field_still_has_its_steps_checked(problems: Problems) -> None:
    flow = journey("- id: a\n  send: nope", reentry="often", timeout="forever")
    assert problems(flow) == [
        "doc01.yaml:6: journey j: step a: template 'nope' is not defined",
        "doc01.yaml:7: journey j: 'reentry' must be never, always or 'after <duration>', "
        "not 'often'",
        "doc01.yaml:8: journey j: 'timeout': 'forever' is not a duration: use a number and a "
        "unit s, m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
    ]


# References


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "send: hello_emial",
            "step a: template 'hello_emial' is not defined (did you mean 'hello_email'?)",
        ),
        ("call: crm", "step a: action 'crm' is not defined"),
        ("jump: j2", "step a: journey 'j2' is not defined (did you mean 'j'?)"),
        (
            "wait_for: {event: purchase}",
            "step a: event 'purchase' is not defined (did you mean 'purchased'?)",
        ),
    ],
)
def test_a_step_naming_something_undefined_is_an_error(
    problems: Problems, step: str, expected: str
) -> None:
    assert problems(journey(f"- id: a\n  {step}")) == [f"doc01.yaml:6: journey j: {expected}"]


def test_entry_and_exit_events_must_be_defined(problems: Problems) -> None:
    text = (
        "kind: journey\nname: j\nentry: {event: signed_upp}\nsteps: [{id: a, end: x}]\n"
        "exit:\n  - event: deleted\n  - event: gone\n"
    )
    assert problems(text) == [
        "doc01.yaml:3: journey j: event 'signed_upp' is not defined (did you mean 'signed_up'?)",
        "doc01.yaml:7: journey j: event 'gone' is not defined",
    ]


def test_a_reference_to_a_broken_definition_is_not_called_undefined(problems: Problems) -> None:
    event = "kind: event\nname: booked\nschema: {type: thing}\n"
    flow = journey("- id: a\n  wait_for: {event: booked}")
    (line,) = problems(event, flow)
    assert line.startswith("doc01.yaml:3: event booked: 'schema' is not a valid JSON Schema")


def test_the_example_from_the_docs_points_at_the_goto(tmp_path: Path) -> None:
    welcome = """\
        kind: journey
        name: welcome
        entry:
          event: signed_up
        steps:
          - id: await_purchase
            wait_for:
              event: purchased
              timeout: 2d
            on_timeout: nudge
          - id: nudge
            branch:
              - when: profile.plan == "pro"
                goto: done2
              - otherwise: done
          - id: done
            end: converted
        """
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "welcome.yaml").write_text(textwrap.dedent(welcome))
    (tmp_path / "settings.yaml").write_text("kind: settings\ntraits: [plan]\n")
    (tmp_path / "events.yaml").write_text(BASE)
    assert [str(p) for p in load_workspace(tmp_path).problems] == [
        "journeys/welcome.yaml:14: journey welcome: step nudge: goto 'done2' names no step "
        "(did you mean 'done'?)"
    ]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            "- id: a\n  send: hello_sms\n  next: b2\n- id: b\n  end: x",
            "doc01.yaml:7: journey j: step a: next 'b2' names no step (did you mean 'b'?)",
        ),
        (
            "- id: a\n  branch:\n    - {when: 'true', goto: b}\n    - otherwise: c\n"
            "- id: b\n  end: x",
            "doc01.yaml:8: journey j: step a: otherwise 'c' names no step",
        ),
        (
            "- id: a\n  split:\n    - {weight: 1, goto: b}\n    - {weight: 1, goto: zz}\n"
            "- id: b\n  end: x",
            "doc01.yaml:8: journey j: step a: goto 'zz' names no step",
        ),
        (
            "- id: a\n  wait_for: {event: purchased, timeout: 1d}\n  on_event: b\n  on_timeout: bb"
            "\n- id: b\n  end: x",
            "doc01.yaml:8: journey j: step a: on_timeout 'bb' names no step (did you mean 'b'?)",
        ),
        (
            "- id: a\n  wait_for: {event: purchased}\n  on_event: c\n- id: b\n  end: x",
            "doc01.yaml:7: journey j: step a: on_event 'c' names no step",
        ),
        (
            "- id: a\n  call: crm\n  on_error: oops\n- id: b\n  end: x",
            "doc01.yaml:7: journey j: step a: on_error 'oops' names no step",
        ),
    ],
)
def test_a_link_to_no_step_points_at_the_link(
    problems: Problems, steps: str, expected: str
) -> None:
    action = "kind: action\nname: crm\nurl: https://crm.example\n"
    assert problems(journey(steps), action) == [expected]


# The shape of a journey


def test_a_step_no_path_reaches_is_a_warning(problems: Problems) -> None:
    flow = journey(
        "- id: a\n  send: hello_sms\n  next: c\n- id: b\n  send: hello_push\n- id: c\n  end: x"
    )
    assert problems(flow) == [
        "doc01.yaml:8: warning: journey j: step b: no path leads to this step"
    ]


def test_steps_after_a_broken_link_are_not_also_called_unreachable(problems: Problems) -> None:
    flow = journey(
        "- id: a\n  send: hello_sms\n  next: cc\n- id: b\n  send: hello_push\n- id: c\n  end: x"
    )
    assert problems(flow) == [
        "doc01.yaml:7: journey j: step a: next 'cc' names no step (did you mean 'c'?)"
    ]


def test_a_branch_needs_an_otherwise_case_and_it_comes_last(problems: Problems) -> None:
    no_otherwise = "- id: a\n  branch:\n    - {when: 'true', goto: b}\n- id: b\n  end: x"
    assert problems(journey(no_otherwise)) == [
        "doc01.yaml:6: journey j: step a: a branch needs a final {otherwise: <step>} case"
    ]
    first = (
        "- id: a\n  branch:\n    - otherwise: b\n    - {when: 'true', goto: b}\n- id: b\n  end: x"
    )
    assert problems(journey(first)) == [
        "doc01.yaml:7: journey j: step a: 'otherwise' must be the last case of a branch"
    ]


def test_the_cases_of_a_branch_without_otherwise_are_checked_too(problems: Problems) -> None:
    flow = journey("- id: a\n  branch:\n    - {when: 'true', goto: bb}\n- id: b\n  end: x")
    assert problems(flow) == [
        "doc01.yaml:6: journey j: step a: a branch needs a final {otherwise: <step>} case",
        "doc01.yaml:7: journey j: step a: goto 'bb' names no step (did you mean 'b'?)",
    ]


def test_a_loop_without_a_wait_is_an_error(problems: Problems) -> None:
    flow = journey(
        """
        - id: a
          send: hello_sms
        - id: b
          branch:
            - {when: 'true', goto: a}
            - otherwise: c
        - id: c
          end: x
        """
    )
    assert problems(flow) == [
        "doc01.yaml:5: journey j: step a: the steps a -> b -> a form a loop with no wait in it"
    ]


def test_a_step_that_leads_to_itself_is_a_loop(problems: Problems) -> None:
    flow = journey("- id: a\n  send: hello_sms\n  next: a")
    assert problems(flow) == [
        "doc01.yaml:5: journey j: step a: the steps a -> a form a loop with no wait in it"
    ]


@pytest.mark.parametrize("wait", ["wait: 1d", "wait_for: {event: purchased}"])
def test_a_loop_with_a_wait_in_it_is_allowed(problems: Problems, wait: str) -> None:
    flow = journey(f"- id: a\n  send: hello_sms\n- id: b\n  {wait}\n  next: a")
    assert problems(flow) == []


def test_a_wait_that_ends_after_the_journey_timeout_is_an_error(problems: Problems) -> None:
    flow = journey("- id: a\n  wait: 1d\n- id: b\n  wait: 1d1h\n- id: c\n  end: x", timeout="2d")
    assert problems(flow) == [
        "doc01.yaml:8: journey j: step b: this wait ends 2d1h after entry at the earliest, never "
        "before the journey's timeout of 2d"
    ]


def test_a_wait_that_ends_exactly_at_the_timeout_never_finishes(problems: Problems) -> None:
    flow = journey("- id: a\n  wait: 1w\n- id: b\n  end: x", timeout="7d")
    assert problems(flow) == [
        "doc01.yaml:6: journey j: step a: this wait ends 1w after entry at the earliest, never "
        "before the journey's timeout of 1w"
    ]


def test_a_wait_for_timeout_is_measured_on_the_shortest_path(problems: Problems) -> None:
    steps = """
        - id: a
          wait_for: {event: purchased, timeout: 1d}
          on_event: b
          on_timeout: c
        - id: b
          wait_for: {event: purchased, timeout: 2d}
        - id: c
          end: x
        """
    assert problems(journey(steps, timeout="2d1s")) == []
    assert problems(journey(steps, timeout="2d")) == [
        "doc01.yaml:10: warning: journey j: step b: the timeout path to step c is never "
        "taken: the timeout ends 2d after entry at the earliest, never before the journey's "
        "timeout of 2d, which ends the instance first"
    ]


def test_the_default_timeout_is_91_days(problems: Problems) -> None:
    assert problems(journey("- id: a\n  wait: 90d")) == []
    assert problems(journey("- id: a\n  wait: 13w")) == [
        "doc01.yaml:6: journey j: step a: this wait ends 13w after entry at the earliest, never "
        "before the journey's timeout of 13w"
    ]


def test_on_timeout_needs_a_timeout(problems: Problems) -> None:
    flow = journey("- id: a\n  wait_for: {event: purchased}\n  on_timeout: b\n- id: b\n  end: x")
    assert problems(flow) == [
        "doc01.yaml:7: journey j: step a: 'on_timeout' needs a 'timeout' in 'wait_for'"
    ]


# Durations, times and time zones


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            journey("- id: a\n  wait: 2 days"),
            "doc01.yaml:6: journey j: step a: 'wait': '2 days' is not a duration: use a number "
            "and a unit s, m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
        ),
        (
            journey("- id: a\n  end: x", timeout="90"),
            "doc01.yaml:7: journey j: 'timeout': 90 is not a duration: use a number and a unit "
            "s, m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
        ),
        (
            journey("- id: a\n  end: x", reentry="after 5 minutes"),
            "doc01.yaml:7: journey j: 'reentry': '5 minutes' is not a duration: use a number and "
            "a unit s, m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
        ),
        (
            journey("- id: a\n  wait: 99999999999999999999d"),
            "doc01.yaml:6: journey j: step a: 'wait': '99999999999999999999d' is longer than "
            "100 years",
        ),
        (
            journey("- id: a\n  end: x", timeout="36501d"),
            "doc01.yaml:7: journey j: 'timeout': '36501d' is longer than 100 years",
        ),
        (
            journey("- id: a\n  wait: {until_local: '9am'}"),
            "doc01.yaml:6: journey j: step a: 'until_local': '9am' is not a time of day: use "
            "HH:MM, such as 09:00 or 21:30",
        ),
        (
            journey("- id: a\n  wait: {until_local: '09:00', days: [monday]}"),
            "doc01.yaml:6: journey j: step a: 'days' must be one of mon, tue, wed, thu, fri, sat, "
            "sun, not 'monday' (did you mean 'mon'?)",
        ),
        (
            journey("- id: a\n  wait: {until: 'now', days: [mon]}"),
            "doc01.yaml:6: journey j: step a: 'days' goes with 'until_local'",
        ),
        (
            "kind: rules\nquiet_hours:\n  from: '24:00'\n  to: '08:00'\n",
            "doc01.yaml:3: rules: 'from': '24:00' is not a time of day: use HH:MM, such as 09:00 "
            "or 21:30",
        ),
        (
            "kind: rules\ncaps: [{max: 1, per: a week}]\n",
            "doc01.yaml:2: rules: 'per': 'a week' is not a duration: use a number and a unit s, "
            "m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
        ),
        (
            "kind: settings\ntimezone: Europe/Pariss\n",
            "doc01.yaml:2: settings: 'timezone': 'Europe/Pariss' is not an IANA time zone name "
            "such as Europe/Paris",
        ),
        (
            "kind: settings\ntimezone: ../../etc/passwd\n",
            "doc01.yaml:2: settings: 'timezone': '../../etc/passwd' is not an IANA time zone name "
            "such as Europe/Paris",
        ),
        (
            "kind: test\nname: t\nstart: next monday\nevents: []\nexpect: []\n",
            "doc01.yaml:3: test t: 'start': 'next monday' is not an ISO 8601 timestamp such as "
            "2026-01-05T09:30:00Z",
        ),
        (
            "kind: test\nname: t\nstart: '9999-12-31T23:59:59-05:00'\nevents: []\nexpect: []\n",
            "doc01.yaml:3: test t: 'start': '9999-12-31T23:59:59-05:00' is outside the years "
            "1 to 9999 in UTC",
        ),
        (
            "kind: test\nname: t\nevents: [{at: 5, track: {}}]\nexpect: []\n",
            "doc01.yaml:3: test t: 'at': 5 is not a duration: use a number and a unit s, m, h, d "
            "or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
        ),
    ],
)
def test_a_bad_duration_time_or_zone_is_an_error(
    problems: Problems, text: str, expected: str
) -> None:
    assert expected in problems(text)


def test_durations_times_and_zones_that_read_well_are_accepted(problems: Problems) -> None:
    steps = """
        - id: a
          wait: 1h30m
        - id: b
          wait: {until_local: '9:05', days: [mon, fri]}
        - id: c
          wait: {until: 'now + duration("1d")'}
        """
    settings = "kind: settings\ntimezone: America/New_York\n"
    assert problems(settings, journey(steps, reentry="after 1w", timeout="30d")) == []


# Expressions and Liquid, with the column


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kind: journey\nname: j\nentry: {event: signed_up, when: 'entry.plan = \"pro\"'}\n"
            "steps: [{id: a, end: x}]\n",
            "doc01.yaml:3: journey j: 'when': expression error at column 12: use '==' to "
            "compare; '=' is not an operator",
        ),
        (
            journey("- id: a\n  end: x", exit="[{event: deleted, when: 'event.plan =='}]"),
            "doc01.yaml:7: journey j: 'when': expression error at column 14: expected an "
            "operand, found the end of the expression",
        ),
        (
            journey("- id: a\n  wait: {until: 'timestamp(entry.at) -'}"),
            "doc01.yaml:6: journey j: step a: 'until': expression error at column 22: expected "
            "an operand, found the end of the expression",
        ),
        (
            journey("- id: a\n  wait_for: {event: purchased, when: 'event.total >> 2'}"),
            "doc01.yaml:6: journey j: step a: 'when': expression error at column 14: expected "
            "an operand, found '>'",
        ),
        (
            journey(
                "- id: a\n  branch:\n    - {when: '(profile.x', goto: b}\n    - otherwise: b\n"
                "- id: b\n  end: x"
            ),
            "doc01.yaml:7: journey j: step a: 'when': expression error at column 11: expected "
            "')', found the end of the expression",
        ),
        (
            journey("- id: a\n  update_profile: {set: {x: {expr: 'now +'}}}"),
            "doc01.yaml:6: journey j: step a: 'expr': expression error at column 6: expected an "
            "operand, found the end of the expression",
        ),
        (
            "kind: template\nname: t\nchannel: email\ntext: x\n"
            "subject: 'Hi {{ profile.firstName '\n",
            "doc01.yaml:5: template t: 'subject': Liquid error at line 1, column 4: expected "
            "'}}', found end of file",
        ),
        (
            "kind: template\nname: t\nchannel: email\nsubject: Hi\nhtml: |\n  <p>ok</p>\n"
            "  <p>{% if profile.firstName %}</p>\n",
            "doc01.yaml:5: template t: 'html': Liquid error at line 3, column 1: expected tag "
            "endif, found end of template",
        ),
        (
            "kind: template\nname: t\nchannel: sms\nbody: '{{ profile.firstName | shout }}'\n",
            "doc01.yaml:4: template t: 'body': Liquid error at line 1, column 24: unknown filter "
            "'shout'",
        ),
        (
            "kind: template\nname: t\nchannel: sms\nbody: \"{% include 'footer' %}\"\n",
            "doc01.yaml:4: template t: 'body': Liquid error at line 1, column 4: the 'include' "
            "tag is not supported: templates cannot load templates",
        ),
        (
            "kind: template\nname: t\nchannel: sms\nbody: x\nto: '{{ profile.phone'\n",
            "doc01.yaml:5: template t: 'to': Liquid error at line 1, column 1: expected '}}', "
            "found end of file",
        ),
        (
            "kind: action\nname: a\nurl: 'https://x.example/{{ profile.id '\n",
            "doc01.yaml:3: action a: 'url': Liquid error at line 1, column 19: expected '}}', "
            "found end of file",
        ),
        (
            "kind: action\nname: a\nurl: https://x.example\nheaders:\n  X-Id: '{% if %}'\n",
            "doc01.yaml:5: action a: 'X-Id': Liquid error at line 1, column 4: missing expression",
        ),
    ],
)
def test_a_syntax_error_in_code_gives_its_column(
    problems: Problems, text: str, expected: str
) -> None:
    assert expected in problems(text)


# Jumps


def test_jumps_that_loop_are_refused_in_every_journey_of_the_loop(problems: Problems) -> None:
    a = journey("- id: to_b\n  jump: b", name="a")
    b = journey("- id: out\n  jump: c\n- id: to_a\n  jump: a", name="b")
    c = journey("- id: done\n  end: x", name="c")
    assert problems(a, b, c) == [
        "doc01.yaml:5: journey a: step to_b: jumps form a loop between journeys: a -> b -> a",
        "doc02.yaml:7: journey b: step to_a: jumps form a loop between journeys: a -> b -> a",
    ]


def test_a_journey_that_jumps_to_itself_is_a_loop(problems: Problems) -> None:
    assert problems(journey("- id: again\n  jump: j")) == [
        "doc01.yaml:5: journey j: step again: jumps form a loop between journeys: j -> j"
    ]


def test_a_chain_of_jumps_is_allowed(problems: Problems) -> None:
    a = journey("- id: to_b\n  jump: b", name="a")
    b = journey("- id: to_c\n  jump: c", name="b")
    c = journey("- id: done\n  end: x", name="c")
    assert problems(a, b, c) == []


# Secrets in actions


def action(url: str = "https://crm.example/contacts", headers: str = "{}") -> str:
    return f"kind: action\nname: crm\nurl: '{url}'\nheaders: {headers}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            action(headers="{Authorization: Bearer sk_live_123}"),
            "doc01.yaml:4: action crm: header 'Authorization' looks secret: write it as ${ENV_VAR}",
        ),
        (
            action(headers="{X-Api-Key: abc}"),
            "doc01.yaml:4: action crm: header 'X-Api-Key' looks secret: write it as ${ENV_VAR}",
        ),
        (
            action(headers="{X-Webhook-Signature: abc}"),
            "doc01.yaml:4: action crm: header 'X-Webhook-Signature' looks secret: write it as "
            "${ENV_VAR}",
        ),
        (
            action("https://admin:hunter2@crm.example/contacts"),
            "doc01.yaml:3: action crm: 'url' must not carry credentials: use a header with "
            "${ENV_VAR}",
        ),
        (
            action("https://ghp_abc123@crm.example/contacts"),
            "doc01.yaml:3: action crm: 'url' must not carry credentials: use a header with "
            "${ENV_VAR}",
        ),
        (
            action("https://crm.example/contacts?format=json&api_key=abc123"),
            "doc01.yaml:3: action crm: query parameter 'api_key' looks secret: write it as "
            "${ENV_VAR}",
        ),
        (
            action("https://crm.example/contacts?accessToken=abc123"),
            "doc01.yaml:3: action crm: query parameter 'accessToken' looks secret: write it as "
            "${ENV_VAR}",
        ),
    ],
)
def test_a_secret_written_into_an_action_is_refused(
    problems: Problems, text: str, expected: str
) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        (
            "https://crm.example/contacts",
            "{Authorization: 'Bearer ${CRM_TOKEN}', Content-Type: text/plain}",
        ),
        ("https://crm.example/contacts?api_key=${CRM_KEY}", "{}"),
        ("https://crm.example/unsubscribe?token={{ profile.id }}", "{}"),
        ("https://crm.example/search?keyword=shoes&email=a@b.example", "{}"),
        ("https://crm.example/users/@me", "{}"),
    ],
)
def test_secrets_from_the_environment_and_plain_parameters_are_allowed(
    problems: Problems, url: str, headers: str
) -> None:
    assert problems(action(url, headers)) == []


# Journey tests


def test_expectations_must_name_steps_journeys_and_end_states_that_exist(
    problems: Problems,
) -> None:
    flow = journey("- id: hello\n  send: hello_sms\n- id: done\n  end: greeted")
    test = """\
        kind: test
        name: t
        events: []
        expect:
          - sent: helo
          - never: j.hi
          - sent: k.hello
          - ended: greet
          - ended: timed_out
          - entered: jj
          - exited: true
          - timed_out: j
          - rejected: anything
          - {sent: hello, journey: k}
        fail: [done, j.nope]
        """
    assert problems(flow, test) == [
        "doc02.yaml:5: test t: no journey has a step 'helo' (did you mean 'hello'?)",
        "doc02.yaml:6: test t: journey j has no step 'hi'",
        "doc02.yaml:7: test t: journey 'k' is not defined",
        "doc02.yaml:8: test t: no journey ends in 'greet' (did you mean 'greeted'?)",
        "doc02.yaml:10: test t: journey 'jj' is not defined (did you mean 'j'?)",
        "doc02.yaml:14: test t: journey 'k' is not defined",
        "doc02.yaml:15: test t: journey j has no step 'nope'",
    ]


def test_expectations_about_a_journey_with_a_broken_field_are_checked(
    problems: Problems,
) -> None:
    flow = journey("- id: hello\n  send: hello_sms\n- id: done\n  end: greeted", timeout="never")
    test = "kind: test\nname: t\nevents: []\nexpect: [{sent: hello}, {ended: greetd}]\n"
    assert [line for line in problems(flow, test) if "test t" in line] == [
        "doc02.yaml:4: test t: no journey ends in 'greetd' (did you mean 'greeted'?)"
    ]


def test_expectations_about_a_journey_whose_steps_cannot_be_read_are_not_called_unknown(
    problems: Problems,
) -> None:
    broken = "kind: journey\nname: k\nentry: {event: signed_up}\nsteps: 3\n"
    test = "kind: test\nname: t\nevents: []\nexpect: [{sent: k.x}, {entered: k}, {sent: y}]\n"
    assert problems(broken, test) == [
        "doc01.yaml:4: journey k: 'steps' must be a list, not a number"
    ]


# Warnings: fields nothing provides


def test_a_template_field_no_trait_or_schema_provides_is_a_warning(load: Load) -> None:
    template = (
        "kind: template\nname: t\nchannel: sms\n"
        "body: '{{ profile.firstNme }} {{ profile.loyalty }} {{ event.totl }} {{ entry.plan }}'\n"
    )
    loaded = load(BASE, template)
    assert [str(p) for p in loaded.warnings] == [
        "doc01.yaml:4: warning: template t: 'event.totl' is in no event schema (did you mean "
        "'total'?)",
        "doc01.yaml:4: warning: template t: 'profile.firstNme' is not a known trait "
        "(did you mean 'firstName'?); declare it in settings traits",
        "doc01.yaml:4: warning: template t: 'profile.loyalty' is not a known trait; declare it in "
        "settings traits",
    ]
    assert loaded.errors == []
    assert loaded.workspace is not None


def test_expressions_and_action_templates_are_checked_for_unknown_fields(load: Load) -> None:
    flow = journey(
        """
        - id: a
          branch:
            - {when: 'entry.plna == "pro"', goto: b}
            - otherwise: b
        - id: b
          call: crm
        """
    )
    crm = "kind: action\nname: crm\nurl: 'https://crm.example/{{ profile.crm_id }}'\n"
    assert [str(p) for p in load(BASE, flow, crm).warnings] == [
        "doc01.yaml:7: warning: journey j: 'entry.plna' is in no event schema "
        "(did you mean 'plan'?)",
        "doc02.yaml:3: warning: action crm: 'profile.crm_id' is not a known trait; declare it in "
        "settings traits",
    ]


def test_declared_set_and_standard_fields_are_not_warned_about(load: Load) -> None:
    settings = "kind: settings\ntraits: [tier]\n"
    template = (
        "kind: template\nname: t\nchannel: sms\nbody: '{{ profile.tier }} {{ profile.score }} "
        "{{ profile.email }} {{ event.properties.order_id }} {{ event.timestamp }} {{ now }}'\n"
    )
    flow = journey("- id: a\n  update_profile: {set: {score: 1}}")
    assert load(BASE, settings, template, flow).problems == []


# Odd input never raises


STEP_TYPES = ["wait", "wait_for", "branch", "split", "send", "call", "update_profile", "jump"]
HEAD = "kind: journey\nname: j\nentry: {event: e}\n"
ODD_DOCUMENTS = [
    "- a\n- b\n",
    "42\n",
    "kind: [journey]\n",
    HEAD + "steps: {}\n",
    HEAD + "steps: [5, null, [], 'x']\n",
    HEAD + "steps: [{id: a, branch: x}]\n",
    HEAD + "steps: [{id: a, wait: {}}]\n",
    HEAD + "steps: [{id: a, split: [{weight: -1}]}]\n",
    HEAD + "steps: [{id: [a], end: x}, {id: {a: 1}}]\n",
    HEAD + "steps:\n" + "".join(f"  - {{id: s{i}, {t}: ~}}\n" for i, t in enumerate(STEP_TYPES)),
    HEAD + "steps: [{id: a, branch: [~, 1, {otherwise: ~}]}]\n",
    HEAD + "steps: [{id: a, update_profile: {set: [1], unset: a}}]\n",
    HEAD + "steps: [{id: a, wait: {until_local: 9, days: mon}}]\n",
    HEAD + "timeout: 99999999999999999999d\nsteps: [{id: a, end: x}]\n",
    HEAD + "steps: [{id: a, end: x}]\n1: 2\n",
    "kind: journey\nname: j\nentry: ~\nreentry: ~\ntimeout: ~\nexit: [~]\nignore_caps: ~\n",
    "kind: event\nname: ~\n",
    "kind: event\nname: e\nidentity: [1]\nschema: {type: object, properties: [a]}\n",
    "kind: event\nname: e\nschema: {$ref: '#/nowhere', properties: {a: {$ref: 7}}}\n",
    "kind: event\nname: e\nschema: " + "{not: " * 70 + "{}" + "}" * 70 + "\n",
    "kind: template\nname: t\nchannel: ~\nsubject: ~\nbody: {a: 1}\n",
    "kind: template\nname: t\nchannel: email\nsubject: ~\nhtml: [x]\nto: 5\n",
    "kind: action\nname: a\nmethod: [GET]\nurl: ~\nheaders: {1: 2, ~: x, Authorization: ~}\n",
    "kind: rules\ncaps: [~, {max: ~, per: ~, channels: ~}]\nquiet_hours: [~, {from: 1}]\n",
    "kind: rules\nquiet_hours: 5\n",
    "kind: settings\ntimezone: [UTC]\ntraits: {a: 1}\n",
    "kind: test\nname: t\nstart: ~\nuntil: ~\nevents: ~\nexpect: [~, {sent: ~}]\nfail: a\n",
    "kind: test\nname: [t]\n",
    "kind: test\nname: t\nstart: 0001-01-01T00:00:00+01:00\nevents: [{at: [1]}]\nexpect: {}\n",
    "a: &a [*a]\n",
]


@pytest.mark.parametrize("text", ODD_DOCUMENTS)
def test_odd_yaml_gives_problems_never_an_exception(load: Load, text: str) -> None:
    loaded = load(text)
    assert loaded.errors
    assert loaded.workspace is None
    for problem in loaded.problems:
        assert re.fullmatch(r"doc00\.yaml:\d+: .+", str(problem))
        assert 1 <= problem.line <= text.count("\n") + 1


# Every field of every kind, replaced by odd values, in memory for speed.

SOUND: dict[str, dict[str, Any]] = {
    "journey": {
        "kind": "journey",
        "name": "j",
        "description": "every step type",
        "entry": {"event": "signed_up", "when": "entry.plan != 'internal'"},
        "reentry": "after 1d",
        "timeout": "30d",
        "exit": [{"event": "deleted", "when": "true"}],
        "ignore_caps": False,
        "steps": [
            {"id": "w", "wait": "1h"},
            {"id": "local", "wait": {"until_local": "09:00", "days": ["mon"]}},
            {"id": "until", "wait": {"until": "now"}},
            {
                "id": "wf",
                "wait_for": {"event": "purchased", "when": "true", "timeout": "1d"},
                "on_event": "b",
                "on_timeout": "b",
            },
            {"id": "b", "branch": [{"when": "true", "goto": "s"}, {"otherwise": "s"}]},
            {"id": "s", "split": [{"weight": 1, "goto": "send"}]},
            {"id": "send", "send": "hello_email", "on_error": "call", "next": "call"},
            {"id": "call", "call": "crm", "on_error": "u"},
            {"id": "u", "update_profile": {"set": {"a": 1, "b": {"expr": "now"}}, "unset": ["c"]}},
            {"id": "jump", "jump": "k"},
            {"id": "e", "end": "done"},
        ],
    },
    "event": {
        "kind": "event",
        "name": "ev",
        "identity": "email",
        "schema": {"type": "object", "properties": {"p": {"type": "string"}}},
    },
    "template": {
        "kind": "template",
        "name": "t",
        "channel": "email",
        "subject": "s",
        "html": "h <a href='{{ unsubscribe_url }}'>stop</a>",
        "text": "{{ profile.email }}",
        "to": "{{ profile.email }}",
        "topic": "news",
    },
    "subscription": {
        "kind": "subscription",
        "name": "news",
        "channel": "email",
        "default": "opt_in",
        "description": "d",
    },
    "action": {
        "kind": "action",
        "name": "crm",
        "method": "PUT",
        "url": "https://crm.example/{{ profile.id }}",
        "headers": {"Authorization": "Bearer ${CRM_TOKEN}"},
        "body": "{}",
        "timeout": "5s",
    },
    "rules": {
        "kind": "rules",
        "caps": [{"channels": ["email"], "max": 1, "per": "1d"}],
        "quiet_hours": {"from": "21:00", "to": "08:00", "channels": ["sms"], "action": "drop"},
    },
    "settings": {"kind": "settings", "timezone": "Europe/Paris", "traits": ["a", "b", "c"]},
    "test": {
        "kind": "test",
        "name": "a test",
        "start": "2026-01-01T00:00:00Z",
        "until": "1d",
        "fail": ["j.send"],
        "events": [
            {"at": "0s", "identify": {"userId": "u", "traits": {"email": "u@example.com"}}},
            {"at": "1s", "track": {"userId": "u", "event": "signed_up"}},
        ],
        "expect": [
            {"sent": "send", "at": "1s", "times": 1, "profile": "u", "journey": "j", "to": "a"},
            {"exited": True},
        ],
    },
}
# What SOUND refers to: events, a template and a second journey to jump to.
CONTEXT = """\
kind: event
name: signed_up
schema: {properties: {plan: {type: string}}}
---
kind: event
name: purchased
---
kind: event
name: deleted
---
kind: template
name: hello_email
channel: sms
body: Hello
---
kind: journey
name: k
entry: {event: signed_up}
steps: [{id: x, end: done}]
"""
ODD_VALUES: list[Any] = [None, -1, True, "x y", [], {"1": None}]


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        yield from paths(item, (*path, key))


def mutations(document: dict[str, Any]) -> Iterator[Any]:
    """The document with each value in turn replaced by each odd value, or removed."""
    for path in paths(document):
        if not path:
            yield from ODD_VALUES
            continue
        for odd in [*ODD_VALUES, "removed"]:
            changed = copy.deepcopy(document)
            parent = changed
            for key in path[:-1]:
                parent = parent[key]
            if odd == "removed":
                del parent[path[-1]]
            else:
                parent[path[-1]] = odd
            yield changed


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False)


def validate(context: list[Document], text: str) -> tuple[Workspace | None, list[Problem]]:
    """What load_workspace does, in memory: ``context`` plus ``text`` read as odd.yaml."""
    documents, problems = read_documents(text, "odd.yaml")
    parsed = parse_documents([*context, *documents])
    parsed.problems[:0] = problems
    return build_workspace(parsed), parsed.problems


@pytest.mark.parametrize("kind", sorted(SOUND))
def test_odd_values_in_any_field_give_problems_never_an_exception(kind: str) -> None:
    others = [CONTEXT, *(dump(d) for k, d in SOUND.items() if k != kind)]
    context = [d for text in others for d in read_documents(text, "context.yaml")[0]]
    workspace, found = validate(context, dump(SOUND[kind]))
    assert (workspace is not None, found) == (True, [])
    for document in mutations(SOUND[kind]):
        text = dump(document)
        workspace, found = validate(context, text)
        errors = [p for p in found if p.is_error]
        assert (workspace is None) == bool(errors), text
        for problem in found:
            assert problem.message, text
            if problem.file == "odd.yaml":
                assert 1 <= problem.line <= text.count("\n") + 1, text


# The command


def invoke(*args: str | Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output.splitlines()


def test_validate_prints_a_summary_and_exits_0_for_a_sound_workspace(tmp_path: Path) -> None:
    folder = write_workspace(
        tmp_path / "ws",
        BASE,
        journey("- id: a\n  send: hello_sms"),
        journey("- id: b\n  send: hello_push", name="k"),
    )
    assert invoke("validate", folder) == (
        0,
        [f"{folder}: sound (3 events, 3 templates, 0 actions, 2 journeys, 0 tests)"],
    )


def test_validate_prints_warnings_and_still_exits_0(tmp_path: Path) -> None:
    folder = write_workspace(
        tmp_path / "ws",
        BASE,
        journey("- id: a\n  send: hello_sms", exit="[{event: deleted, when: 'profile.vip'}]"),
        journey("- id: b\n  send: hello_push", name="k"),
    )
    code, lines = invoke("validate", folder)
    assert code == 0
    assert lines == [
        "doc01.yaml:7: warning: journey j: 'profile.vip' is not a known trait; declare it in "
        "settings traits",
        f"{folder}: sound (3 events, 3 templates, 0 actions, 2 journeys, 0 tests, 1 warning)",
    ]


def test_validate_prints_one_line_per_problem_and_exits_1(tmp_path: Path) -> None:
    folder = write_workspace(
        tmp_path / "ws",
        BASE,
        journey("- id: a\n  send: hello_smss\n- id: b\n  wait: soon\n- id: c\n  jump: nowhere"),
        "kind: template\nname: t\nchannel: sms\nbody: '{{ profile.nickname }}'\n",
    )
    code, lines = invoke("validate", folder)
    assert code == 1
    assert lines == [
        "doc01.yaml:6: journey j: step a: template 'hello_smss' is not defined (did you mean "
        "'hello_sms'?)",
        "doc01.yaml:8: journey j: step b: 'wait': 'soon' is not a duration: use a number and a "
        "unit s, m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
        "doc01.yaml:10: journey j: step c: journey 'nowhere' is not defined",
        "doc02.yaml:4: warning: template t: 'profile.nickname' is not a known trait (did you "
        "mean 'name'?); declare it in settings traits",
        "3 errors: the workspace is not sound",
    ]


def test_validate_counts_a_single_error(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", "kind: jorney\n")
    code, lines = invoke("validate", folder)
    assert code == 1
    assert lines[-1] == "1 error: the workspace is not sound"
    assert len(lines) == 2


def test_a_journey_of_five_thousand_steps_validates_and_its_problems_keep_their_lines(
    tmp_path: Path,
) -> None:
    steps = "".join(
        f"- id: s{i}\n  send: hello_email\n" if i % 2 else f"- id: s{i}\n  wait: 1m\n"
        for i in range(5000)
    )
    sound = write_workspace(tmp_path / "sound", BASE, journey(steps))
    code, lines = invoke("validate", sound)
    assert code == 0, lines
    last = "- id: s4999\n  send: hello_email\n"
    broken = steps.replace(last, "- id: s4999\n  send: nope\n")
    folder = write_workspace(tmp_path / "broken", BASE, journey(broken))
    code, lines = invoke("validate", folder)
    assert code == 1
    # steps start on line 5, two lines each: s4999 is on line 5 + 2 * 4999
    assert lines[0] == "doc01.yaml:10004: journey j: step s4999: template 'nope' is not defined"


def test_validate_prints_errors_on_stderr_and_warnings_on_stdout(tmp_path: Path) -> None:
    template = "kind: template\nname: t\nchannel: sms\nbody: '{{ profile.vip }}'\n"
    folder = write_workspace(tmp_path / "ws", BASE, template, "kind: jorney\n")
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.stdout.splitlines() == [
        "doc01.yaml:4: warning: template t: 'profile.vip' is not a known trait; declare it in "
        "settings traits"
    ]
    assert result.stderr.splitlines()[0].startswith("doc02.yaml:1: 'kind' must be one of")
    assert result.stderr.splitlines()[1:] == ["1 error: the workspace is not sound"]


@pytest.mark.parametrize("make", ["missing", "file"])
def test_validate_exits_2_when_the_workspace_is_not_a_folder(tmp_path: Path, make: str) -> None:
    target = tmp_path / "ws"
    if make == "file":
        target.write_text("kind: event\nname: e\n")
    code, lines = invoke("validate", target)
    assert code == 2
    assert lines[-1].startswith("Error: Invalid value for 'WORKSPACE': Directory")


def test_validate_exits_1_for_a_folder_without_yaml(tmp_path: Path) -> None:
    code, lines = invoke("validate", tmp_path)
    assert (code, lines) == (
        1,
        [
            f"{tmp_path.as_posix()}:1: no .yaml files in this folder",
            "1 error: the workspace is not sound",
        ],
    )


def test_validate_summary_uses_singular_for_one(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, journey("- id: a\n  send: hello_sms"))
    _, lines = invoke("validate", folder)
    assert "1 journey," in lines[-1]


def test_the_environment_can_set_the_time_zone_and_mode_for_serve(tmp_path: Path) -> None:
    from journeyman.workspace import load_workspace

    folder = write_workspace(tmp_path / "ws", BASE)
    loaded = load_workspace(folder, {"JOURNEYMAN_TIMEZONE": "Asia/Tokyo"})
    assert loaded.workspace is not None
    assert loaded.workspace.settings.timezone.key == "Asia/Tokyo"
    strict = load_workspace(folder, {"JOURNEYMAN_MODE": "production"})
    assert strict.workspace is None
    assert "production mode: templates use channel email" in str(strict.errors[0])
    wrong = load_workspace(folder, {"JOURNEYMAN_TIMEZONE": "Mars/Base", "JOURNEYMAN_MODE": "x"})
    assert [p.file for p in wrong.errors] == ["JOURNEYMAN_MODE", "JOURNEYMAN_TIMEZONE"]


def test_an_event_may_stand_for_a_page_or_a_screen_but_not_both(problems: Problems) -> None:
    pricing = "kind: event\nname: pricing_viewed\npage: Pricing\n"
    home = "kind: event\nname: home_seen\nscreen: Home\n"
    assert problems(pricing, home) == []
    both = "kind: event\nname: e\npage: Pricing\nscreen: Home\n"
    assert problems(both) == ["doc01.yaml:4: event e: an event is a 'page' or a 'screen', not both"]
    again = "kind: event\nname: pricing_again\npage: Pricing\n"
    assert problems(pricing, again) == [
        "doc02.yaml:3: event pricing_again: event pricing_viewed is the page 'Pricing' "
        "already (doc01.yaml:1)"
    ]
    empty = "kind: event\nname: e\nscreen: ''\n"
    assert problems(empty) == [
        "doc01.yaml:3: event e: 'screen' must name the screen (a non-empty string)"
    ]
