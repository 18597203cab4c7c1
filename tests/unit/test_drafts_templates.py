"""Editing a commented template from the editor's JSON: only the edited lines change."""

from __future__ import annotations

import difflib
from pathlib import Path

from journeyman.drafts import (
    edit_document,
    find_document,
    form_schema,
    journey_data,
    new_template,
)
from journeyman.workspace import load_texts

FILE = """\
# Messages of the welcome series.
kind: template
name: welcome_email
channel: email
transactional: true   # a welcome is no marketing
subject: "Welcome, {{ profile.firstName | default: 'friend' }}"   # short: phones cut it
html: |
  <h1>Welcome, {{ profile.firstName | default: 'friend' }}</h1>
  <p>Your plan: {{ profile.plan }}.</p>
text: >-
  Welcome! Your plan is {{ profile.plan }}.

# The same name as a journey: a kind of its own.
---
kind: journey
name: welcome_email
entry: {event: signed_up}
steps:
  - id: greet
    send: welcome_email   # the template above
---
kind: template
name: nudge_sms
channel: sms
body: 'Still there, {{ profile.firstName }}?'   # 1 segment
"""


def changed_lines(old: str, new: str) -> list[str]:
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def template(text: str, name: str) -> dict[str, object]:
    found = find_document(text, "messages.yaml", "template", name)
    assert found is not None
    return journey_data(found)


def test_a_changed_subject_changes_its_line_only_keeping_quotes_and_comments() -> None:
    document = {**template(FILE, "welcome_email"), "subject": "Hello, {{ profile.firstName }}"}
    edited = edit_document(FILE, "messages.yaml", "template", "welcome_email", document)
    old = "subject: \"Welcome, {{ profile.firstName | default: 'friend' }}\"   "
    new = 'subject: "Hello, {{ profile.firstName }}"'.ljust(len(old))  # the comment stays put
    assert changed_lines(FILE, edited.text) == [
        f"-{old}# short: phones cut it",
        f"+{new}# short: phones cut it",
    ]
    assert template(edited.text, "welcome_email") == document


def test_a_changed_html_block_stays_a_block_and_the_rest_is_untouched() -> None:
    old = template(FILE, "welcome_email")
    html = "<h1>Hi, {{ profile.firstName }}</h1>\n<p>Your plan: {{ profile.plan }}.</p>\n"
    document = {**old, "html": html}
    edited = edit_document(FILE, "messages.yaml", "template", "welcome_email", document)
    assert changed_lines(FILE, edited.text) == [
        "-  <h1>Welcome, {{ profile.firstName | default: 'friend' }}</h1>",
        "+  <h1>Hi, {{ profile.firstName }}</h1>",
    ]
    for kept in ("# a welcome is no marketing", "# The same name as a journey", "# 1 segment"):
        assert kept in edited.text


def test_an_sms_body_edit_leaves_the_journey_of_the_same_name_and_other_templates() -> None:
    document = {**template(FILE, "nudge_sms"), "body": "Still there, {{ profile.firstName }}? 🙂"}
    edited = edit_document(FILE, "messages.yaml", "template", "nudge_sms", document)
    assert changed_lines(FILE, edited.text) == [
        "-body: 'Still there, {{ profile.firstName }}?'   # 1 segment",
        "+body: 'Still there, {{ profile.firstName }}? 🙂' # 1 segment",
    ]
    journey = find_document(edited.text, "messages.yaml", "journey", "welcome_email")
    assert journey is not None
    assert journey.data["steps"] == [{"id": "greet", "send": "welcome_email"}]


def test_an_added_key_goes_after_a_block_of_text_and_the_lines_after_it_stay() -> None:
    old = template(FILE, "welcome_email")
    document = {key: value for key, value in old.items() if key != "transactional"}
    document["topic"] = "news"
    edited = edit_document(FILE, "messages.yaml", "template", "welcome_email", document)
    assert changed_lines(FILE, edited.text) == [
        "-transactional: true   # a welcome is no marketing",
        "+topic: news",
    ]
    assert template(edited.text, "welcome_email") == document


def test_a_new_template_is_added_to_the_end_of_the_file_and_loads(tmp_path: Path) -> None:
    document = {**new_template("reminder"), "subject": "Remember", "text": "Hi {{ profile.id }}"}
    edited = edit_document(FILE, "messages.yaml", "template", "reminder", document)
    assert edited.text.startswith(FILE)
    assert edited.text[len(FILE) :] == (
        "---\nkind: template\nname: reminder\nchannel: email\nsubject: Remember\n"
        "text: Hi {{ profile.id }}\n"
    )
    events = "kind: event\nname: signed_up\n"
    loaded = load_texts({"events.yaml": events, "messages.yaml": edited.text}, tmp_path)
    assert loaded.workspace is not None, loaded.problems
    assert set(loaded.workspace.templates) == {"welcome_email", "nudge_sms", "reminder"}


def test_the_form_schema_names_each_channels_template_fields() -> None:
    channels = form_schema({})["template"]["channels"]
    assert channels["email"] == ["subject", "html", "text"]
    assert channels["sms"] == ["body"]
