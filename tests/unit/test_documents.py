"""YAML text to documents that remember the line of every value, and YAML errors as problems."""

from __future__ import annotations

import textwrap

import pytest

from journeyman.domain.documents import Document, read_documents


def read(text: str) -> list[Document]:
    documents, problems = read_documents(textwrap.dedent(text), "f.yaml")
    assert problems == []
    return documents


def yaml_error(text: str) -> str:
    """The one problem ``text`` has, as printed."""
    _, problems = read_documents(textwrap.dedent(text), "f.yaml")
    assert len(problems) == 1
    return str(problems[0])


def test_each_document_of_a_file_starts_on_its_own_line() -> None:
    first, second = read(
        """\
        kind: event
        name: a
        ---
        # a comment line
        kind: event
        name: b
        """
    )
    assert (first.file, first.line, first.data) == ("f.yaml", 1, {"kind": "event", "name": "a"})
    assert (second.line, second.data["name"]) == (5, "b")


def test_a_key_points_at_its_own_line_not_at_the_value_below_it() -> None:
    (document,) = read(
        """\
        kind: journey
        steps:
          - id: a
            wait_for:
              event: e
          - id: b
        """
    )
    assert document.line_of(("steps",)) == 2
    assert document.line_of(("steps", 0)) == 3
    assert document.line_of(("steps", 0, "wait_for")) == 4
    assert document.line_of(("steps", 0, "wait_for", "event")) == 5
    assert document.line_of(("steps", 1, "id")) == 6


def test_a_path_that_was_not_written_falls_back_to_its_nearest_parent() -> None:
    (document,) = read("kind: journey\nentry:\n  event: e\n")
    assert document.line_of(("entry", "when")) == 2
    assert document.line_of(("nowhere", 3, "deep")) == 1


def test_scalars_keep_their_yaml_types_but_timestamps_stay_text() -> None:
    (document,) = read("a: 1\nb: 1.5\nc: true\nd: ~\ne: 2026-01-05T00:00:00Z\nf: 2026-01-05\n")
    assert document.data == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": None,
        "e": "2026-01-05T00:00:00Z",
        "f": "2026-01-05",
    }


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("!!int abc", "'abc' cannot be read as a whole number"),
        ('!!int ""', "'' cannot be read as a whole number"),
        ("!!float .", "'.' cannot be read as a number"),
        ("!!bool maybe", "'maybe' cannot be read as true or false"),
        ("9" * 5000, "(5000 characters) cannot be read as a whole number (of at most 4,300"),
        ("0x" + "f" * 4000, "(4002 characters) cannot be read as a whole number"),
    ],
)
def test_a_value_yaml_cannot_read_is_a_problem_with_its_line(value: str, words: str) -> None:
    message = yaml_error(f"kind: event\nname: e\ntitle: {value}\n")
    assert message.startswith("f.yaml:3: YAML error: ")
    assert words in message


def test_plain_keys_that_are_not_text_become_text() -> None:
    (document,) = read("1: a\ntrue: b\n~: c\n")
    assert document.data == {"1": "a", "True": "b", "None": "c"}


@pytest.mark.parametrize(
    ("text", "count"),
    [("", 0), ("# only a comment\n", 0), ("---\n", 0), ("a: 1\n---\n", 1), ("---\n---\na: 1\n", 1)],
)
def test_empty_documents_are_skipped(text: str, count: int) -> None:
    assert len(read(text)) == count


def test_aliases_are_expanded() -> None:
    (document,) = read("a: &x [1, 2]\nb: *x\n")
    assert document.data == {"a": [1, 2], "b": [1, 2]}


def test_a_syntax_error_is_a_problem_with_its_line() -> None:
    message = yaml_error("kind: event\nname: e\nschema:\n  type: object\n   extra: 1\n")
    assert message == "f.yaml:5: YAML error: mapping values are not allowed in this context"


def test_documents_before_a_syntax_error_are_kept() -> None:
    documents, problems = read_documents("kind: event\nname: a\n---\nname: [\n", "f.yaml")
    assert [d.data["name"] for d in documents] == ["a"]
    assert [p.line for p in problems] == [5]


def test_a_duplicate_key_is_an_error_naming_the_first_line() -> None:
    message = yaml_error("kind: event\nname: a\nschema: {}\nname: b\n")
    assert message == "f.yaml:4: YAML error: duplicate key 'name' (first written on line 2)"


def test_a_duplicate_key_in_a_nested_mapping_is_an_error() -> None:
    message = yaml_error("steps:\n  - id: a\n    wait: 1h\n    id: b\n")
    assert message == "f.yaml:4: YAML error: duplicate key 'id' (first written on line 2)"


def test_merge_keys_are_refused() -> None:
    message = yaml_error("base: &b {kind: event}\nother:\n  <<: *b\n")
    assert message == "f.yaml:3: YAML error: merge keys (<<) are not supported"


def test_a_key_that_is_a_list_is_refused() -> None:
    assert yaml_error("? [a, b]\n: c\n") == "f.yaml:1: YAML error: a key must be a plain value"


def test_an_alias_inside_its_own_value_is_refused() -> None:
    message = yaml_error("kind: event\nloop: &a [1, *a]\n")
    assert message == "f.yaml:2: YAML error: an alias refers to a value that contains it"


def test_aliases_cannot_expand_into_millions_of_values() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    message = yaml_error("\n".join(lines))
    assert message.endswith("YAML error: aliases may repeat at most 100000 values in a document")


def test_a_large_document_written_out_in_full_is_read() -> None:
    text = "values: [" + ", ".join(str(i) for i in range(150_000)) + "]"
    (document,), problems = read_documents(text, "big.yaml")
    assert problems == []
    assert len(document.data["values"]) == 150_000


def test_values_may_nest_64_levels_but_no_deeper() -> None:
    read("a: " + "[" * 64 + "]" * 64)
    message = yaml_error("a: " + "[" * 65 + "]" * 65)
    assert message == "f.yaml:1: YAML error: values nest more than 64 levels deep"


def test_a_yaml_problem_has_no_kind_or_name() -> None:
    _, (problem,) = read_documents("a: [\n", "f.yaml")
    assert (problem.kind, problem.name, problem.is_error) == ("", "", True)


def test_a_json_file_reads_like_yaml_and_finds_lines_when_a_problem_needs_them() -> None:
    text = '{\n  "kind": "event",\n  "name": "signed_up",\n  "schema": {"type": "object"}\n}\n'
    (document,), problems = read_documents(text, "e.yaml")
    assert problems == []
    assert document.data == read_documents(text.replace("{\n", "{ \n"), "x")[0][0].data
    assert document.line_of(("schema",), exact=False) == 1  # cheap: not worked out yet
    assert document.line_of(("schema",)) == 4


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "a": 2}', '{"a": NaN}', "{a: 1}"],
)
def test_json_that_yaml_reads_differently_goes_through_the_yaml_reader(text: str) -> None:
    documents, problems = read_documents(text, "f.yaml")
    assert all(d.source is None for d in documents)
    if '"a": 1, "a"' in text:
        assert "duplicate key 'a'" in problems[0].message
