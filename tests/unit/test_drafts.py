"""Editing a commented journey file from the editor's JSON: only the edited lines change."""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from journeyman.domain.documents import read_documents
from journeyman.domain.parse import STEP_TYPES
from journeyman.drafts import (
    DraftError,
    edit_journey,
    find_journey,
    form_schema,
    journey_data,
    located,
    new_journey,
    unified_diff,
)
from journeyman.workspace import load_texts

FILE = """\
# Events and the welcome journey, kept together.
kind: event
name: account_created
identity: userId
---
# The welcome journey: a wait, a hello, a branch on the plan.
kind: journey
name: welcome   # shown in the console
entry:
  event: account_created
  when: event.plan != "internal"   # staff never enter
reentry: 'after 5m'
exit: [{event: account_deleted}]
steps:
  - id: settle
    wait: 20s       # let the account settle

  # say hello once it has
  - id: hello
    send: welcome_email
  - id: plan
    branch:
      - when: profile.plan == "pro"
        goto: pro
      - otherwise: done
  - id: pro
    wait_for: {event: order_completed, timeout: 2d}
    on_timeout: done
    days: [mon, tue]
  - id: done
    end: "converted"
# nothing after the journey
---
kind: template
name: welcome_email
channel: email
subject: 'Hi!'   # short
"""


def document() -> dict[str, Any]:
    found = find_journey(FILE, "welcome.yaml", "welcome")
    assert found is not None
    return copy.deepcopy(journey_data(found))


def edit(data: dict[str, Any], text: str = FILE) -> str:
    return edit_journey(text, "welcome.yaml", "welcome", data).text


def changes(old: str, new: str) -> tuple[list[str], list[str]]:
    """The lines only ``old`` has, and those only ``new`` has, in order."""
    lines = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    return [x[2:] for x in lines if x.startswith("- ")], [x[2:] for x in lines if x[0] == "+"]


def step(data: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in data["steps"] if s["id"] == step_id)
    return found


def test_an_unchanged_document_leaves_the_file_as_it_is() -> None:
    assert edit(document()) == FILE


def test_a_changed_wait_changes_its_line_only_and_keeps_the_comment() -> None:
    data = document()
    step(data, "settle")["wait"] = "2d"
    assert changes(FILE, edit(data)) == (
        ["    wait: 20s       # let the account settle"],
        ["    wait: 2d        # let the account settle"],
    )


def test_a_step_added_in_the_middle_goes_where_it_stands_in_the_list() -> None:
    data = document()
    data["steps"].insert(1, {"id": "nudge", "send": "nudge_email", "next": "hello"})
    new = edit(data)
    assert changes(FILE, new) == (
        [],
        ["  - id: nudge", "    send: nudge_email", "    next: hello"],
    )
    # The comment about `hello` still comes right before it.
    assert "    next: hello\n\n  # say hello once it has\n  - id: hello\n" in new


def test_a_removed_step_goes_with_the_comment_about_it() -> None:
    data = document()
    data["steps"] = [s for s in data["steps"] if s["id"] != "hello"]
    assert changes(FILE, edit(data)) == (
        ["", "  # say hello once it has", "  - id: hello", "    send: welcome_email"],
        [],
    )


def test_a_branch_arm_is_added_before_otherwise() -> None:
    data = document()
    step(data, "plan")["branch"].insert(1, {"when": 'profile.plan == "team"', "goto": "pro"})
    assert changes(FILE, edit(data)) == (
        [],
        ['      - when: profile.plan == "team"', "        goto: pro"],
    )


def test_a_renamed_step_changes_its_id_line_and_the_references_to_it() -> None:
    data = document()
    step(data, "done")["id"] = "finished"
    step(data, "plan")["branch"][1]["otherwise"] = "finished"
    step(data, "pro")["on_timeout"] = "finished"
    assert changes(FILE, edit(data)) == (
        ["      - otherwise: done", "    on_timeout: done", "  - id: done"],
        ["      - otherwise: finished", "    on_timeout: finished", "  - id: finished"],
    )


def test_flow_style_lists_and_mappings_stay_flow_style() -> None:
    data = document()
    step(data, "pro")["days"].append("wed")
    step(data, "pro")["wait_for"]["timeout"] = "3d"
    data["exit"].append({"event": "account_closed"})
    assert changes(FILE, edit(data)) == (
        [
            "exit: [{event: account_deleted}]",
            "    wait_for: {event: order_completed, timeout: 2d}",
            "    days: [mon, tue]",
        ],
        [
            "exit: [{event: account_deleted}, {event: account_closed}]",
            "    wait_for: {event: order_completed, timeout: 3d}",
            "    days: [mon, tue, wed]",
        ],
    )


def test_quotes_are_kept_on_changed_values() -> None:
    data = document()
    data["reentry"] = "after 10m"
    step(data, "done")["end"] = "welcomed"
    assert changes(FILE, edit(data)) == (
        ["reentry: 'after 5m'", '    end: "converted"'],
        ["reentry: 'after 10m'", '    end: "welcomed"'],
    )


def test_new_keys_go_at_the_end_of_their_mapping() -> None:
    data = document()
    data["timeout"] = "30d"
    step(data, "settle")["next"] = "plan"
    new = edit(data)
    assert changes(FILE, new) == ([], ["    next: plan", "timeout: 30d"])
    assert '    end: "converted"\ntimeout: 30d\n# nothing after the journey\n' in new


def test_removed_keys_go() -> None:
    data = document()
    del data["exit"]
    del step(data, "pro")["days"]
    assert changes(FILE, edit(data)) == (
        ["exit: [{event: account_deleted}]", "    days: [mon, tue]"],
        [],
    )


def test_text_that_yaml_would_read_as_something_else_is_quoted() -> None:
    data = document()
    data["description"] = "yes"
    step(data, "settle")["description"] = "1:30"
    new = edit(data)
    assert changes(FILE, new)[1] == ['    description: "1:30"', 'description: "yes"']
    found = find_journey(new, "welcome.yaml", "welcome")
    assert found is not None
    assert found.data["description"] == "yes"


def test_several_lines_of_text_are_written_as_a_block() -> None:
    data = document()
    data["description"] = "Welcome new accounts.\nThen nudge the pro ones."
    assert changes(FILE, edit(data))[1] == [
        "description: |-",
        "  Welcome new accounts.",
        "  Then nudge the pro ones.",
    ]


def test_the_other_documents_of_the_file_are_untouched() -> None:
    data = document()
    step(data, "settle")["wait"] = "1m"
    new = edit(data)
    assert new.startswith(FILE.split("---")[0])
    assert new.endswith(FILE.split("---")[2])


def test_lines_the_yaml_writer_would_respace_stay_as_written() -> None:
    odd = (
        "kind: journey\nname:    welcome\nentry: {event: a,   when: 'true'}\n"
        "steps:\n- id: a\n  wait:   1d\n- {id: b, end: x}\n"
    )
    found = find_journey(odd, "w.yaml", "welcome")
    assert found is not None
    data = journey_data(found)
    data["steps"][0]["wait"] = "2d"
    new = edit_journey(odd, "w.yaml", "welcome", data).text
    assert changes(odd, new) == (["  wait:   1d"], ["  wait: 2d"])


def test_a_journey_the_file_does_not_have_is_added_as_a_document_of_its_own() -> None:
    new = edit_journey(FILE, "welcome.yaml", "fresh", new_journey("fresh")).text
    assert new.startswith(FILE)
    assert new[len(FILE) :].startswith("---\nkind: journey\nname: fresh\n")
    assert edit_journey("", "fresh.yaml", "fresh", new_journey("fresh")).text.startswith(
        "kind: journey\n"
    )


def test_a_file_that_is_no_yaml_is_refused() -> None:
    with pytest.raises(DraftError):
        edit_journey("a: [", "w.yaml", "welcome", new_journey("welcome"))


def test_the_diff_reads_as_git_shows_it() -> None:
    data = document()
    step(data, "settle")["wait"] = "2d"
    diff = unified_diff(FILE, edit(data), "journeys/welcome.yaml")
    assert diff.startswith("--- a/journeys/welcome.yaml\n+++ b/journeys/welcome.yaml\n@@ ")
    assert "\n-    wait: 20s       # let the account settle\n" in diff
    assert "\n+    wait: 2d        # let the account settle\n" in diff
    assert unified_diff(FILE, FILE, "x.yaml") == ""


def test_problems_name_the_path_line_and_column_of_the_draft() -> None:
    data = document()
    step(data, "settle")["wait"] = "soon"
    edited = edit_journey(FILE, "welcome.yaml", "welcome", data)
    loaded = load_texts({"welcome.yaml": edited.text})
    found = located(
        [p for p in loaded.problems if "soon" in p.message], edited.document, edited.text
    )
    assert len(found) == 1
    assert found[0]["path"] == "steps[0].wait"
    assert (found[0]["line"], found[0]["column"]) == (16, 5)
    assert found[0]["message"].startswith("welcome.yaml:16: journey welcome: step settle: ")


# the editor's form schema


def _step_of(kind: str, field: str) -> dict[str, Any]:
    """A step of ``kind`` that writes ``field`` (a value of any shape: only the keys count)."""
    found: dict[str, Any] = {"id": "s", kind: None}
    if field not in ("id", kind):
        found[field] = None
    return found


def _unknown_keys(item: dict[str, Any]) -> list[str]:
    text = f"kind: journey\nname: j\nentry: {{event: e}}\nsteps:\n  - {json.dumps(item)}\n"
    loaded = load_texts({"j.yaml": text})
    return [p.message for p in loaded.problems if p.code == "unknown-key"]


def test_every_step_type_the_parser_reads_is_in_the_schema_with_the_keys_it_accepts() -> None:
    schema = form_schema({})
    assert set(schema["steps"]) == set(STEP_TYPES)
    for kind in STEP_TYPES:
        fields = schema["steps"][kind]["fields"]
        assert kind in fields
        assert fields[kind]["required"] is True
        assert fields["id"]["required"] is True
        for field in fields:
            assert _unknown_keys(_step_of(kind, field)) == [], (kind, field)
        assert _unknown_keys(_step_of(kind, "colour")), kind
    # Branch, split and end never go on to a next step: the form offers no 'next'.
    assert "next" not in schema["steps"]["branch"]["fields"]
    assert "next" in schema["steps"]["wait"]["fields"]
    assert schema["steps"]["wait_for"]["edges"] == ["next", "on_event", "on_timeout"]
    assert schema["steps"]["branch"]["edges"] == ["branch[].goto", "branch[].otherwise"]


def test_the_journey_fields_of_the_schema_are_the_keys_the_parser_accepts() -> None:
    schema = form_schema({"events": ["signed_up"]})
    assert schema["completions"] == {"events": ["signed_up"]}
    journey = schema["journey"]
    assert {name for name, f in journey.items() if f["required"]} == {
        "kind", "name", "entry", "steps"
    }  # fmt: skip
    assert journey["entry"]["fields"]["event"]["type"] == "event"
    assert journey["exit"]["items"] == "object"
    data = dict.fromkeys(journey) | {"kind": "journey", "name": "j"}
    text = yaml.safe_dump(data)
    problems = load_texts({"j.yaml": text}).problems
    assert [p for p in problems if p.code == "unknown-key"] == []
    wait_for = schema["steps"]["wait_for"]["fields"]["wait_for"]
    assert {"opened", "clicked"} <= set(wait_for["fields"]["reaction"]["enum"])


EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.relative_to(EXAMPLES).as_posix()
)
def test_every_example_journey_is_written_back_as_it_is(path: Path) -> None:
    text = path.read_text()
    for found in read_documents(text, path.name)[0]:
        if isinstance(found.data, dict) and found.data.get("kind") == "journey":
            name = found.data["name"]
            assert edit_journey(text, path.name, name, journey_data(found)).text == text
            data = journey_data(found)
            data["steps"][0]["description"] = "Edited."
            new = edit_journey(text, path.name, name, data).text
            assert changes(text, new)[0] == []
            assert changes(text, new)[1] == [
                " " * _indent(new, "description: Edited.") + "description: Edited."
            ]


def _indent(text: str, line: str) -> int:
    found = next(x for x in text.splitlines() if x.strip() == line)
    return len(found) - len(found.lstrip())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(value=_JSON, key=st.text(min_size=1))
@hyp_settings(max_examples=50, deadline=None)
def test_any_json_value_is_written_so_that_the_parser_reads_it_back(value: Any, key: str) -> None:
    data = document()
    data["description"] = value
    step(data, "settle")[key] = value
    edited = edit_journey(FILE, "welcome.yaml", "welcome", data)
    assert journey_data(edited.document) == data
    assert edited.text.startswith(FILE.split("---")[0])
