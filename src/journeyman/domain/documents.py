"""YAML text to plain documents that remember where each value was written.

A workspace file may hold several documents separated by ``---``. Each becomes a
:class:`Document`: the plain data (dicts, lists, strings, numbers, booleans, None) and a
map from every path inside it to the line it starts on, so that a problem found later
can point at ``file:line``.

A file that is one JSON object (JSON is YAML too) is read by the JSON parser, dozens of
times faster, which matters for generated journey tests of many thousands of events. Its
lines are worked out only when a problem needs one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from journeyman.domain.problems import Problem

__all__ = ["Document", "Path", "read_documents"]

Path = tuple[str | int, ...]

try:  # libyaml parses several times faster; the pure-Python loader gives the same nodes.
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,misc,unused-ignore]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(slots=True)
class Document:
    """One YAML document: its data and the line of every value in it."""

    file: str
    line: int
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    source: str | None = None  # JSON text whose lines are not worked out yet

    def line_of(self, path: Path, exact: bool = True) -> int:
        """The line of ``path``, or of its nearest enclosing value that has one.

        Without ``exact``, a document read as JSON answers with its first line rather than
        working out every line.
        """
        if exact and self.source is not None:
            self._locate()
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line

    def _locate(self) -> None:
        source, self.source = self.source, None
        try:
            node = yaml.compose(source or "", Loader=_Loader)
            if node is not None:
                _Builder(self.lines).plain(node, ())
        except yaml.YAMLError:
            pass  # lines stay unknown; every path answers with the document's first line


def read_documents(text: str, file: str) -> tuple[list[Document], list[Problem]]:
    """Split ``text`` into documents; a YAML error becomes a problem with its line."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        data = _json_object(text)
        if data is not None:
            first = text.count("\n", 0, len(text) - len(stripped)) + 1
            return [Document(file=file, line=first, data=data, source=text)], []
    documents: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            document = Document(file=file, line=node.start_mark.line + 1, data=None)
            document.data = _Builder(document.lines).plain(node, ())
            if document.data is not None:  # an empty document, such as after a final `---`
                documents.append(document)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = " ".join(part for part in (error.context, error.problem) if part)
        return documents, [Problem.of("yaml", file, line, "", "", f"YAML error: {message}")]
    except yaml.YAMLError as error:
        return documents, [Problem.of("yaml", file, 1, "", "", f"YAML error: {error}")]
    return documents, []


# Limits that keep a hostile or mistaken file from exhausting the stack or the memory:
# aliases are expanded, so a few lines can otherwise stand for billions of values. Values
# written out count against nothing but the file's size, so generated tests can be large.
_MAX_DEPTH = 64
_MAX_COPIED = 100_000


class _Builder:
    """Turns one document's nodes into plain data, recording the line of every path."""

    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines
        self.copied = 0  # values built again because an alias repeats them
        self.built: set[int] = set()  # collections built once already
        self.open: set[int] = set()  # the collections being built, to catch a looping alias

    def plain(self, node: yaml.Node, path: Path, copy: bool = False) -> Any:
        self.lines[path] = node.start_mark.line + 1
        copy = copy or id(node) in self.built
        if copy:
            self.copied += 1
            if self.copied > _MAX_COPIED:
                message = f"aliases may repeat at most {_MAX_COPIED} values in a document"
                raise _error(node, message)
        if len(path) > _MAX_DEPTH:
            raise _error(node, f"values nest more than {_MAX_DEPTH} levels deep")
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return _scalar(node)
        if id(node) in self.open:
            raise _error(node, "an alias refers to a value that contains it")
        self.open.add(id(node))
        self.built.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.plain(item, (*path, i), copy) for i, item in enumerate(node.value)]
            return self.mapping(node, path, copy)
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: Path, copy: bool) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in _pairs(node):
            key = _scalar(key_node)
            key = key if isinstance(key, str) else str(key)
            if key in result:
                first = self.lines[(*path, key)]
                raise _error(key_node, f"duplicate key '{key}' (first written on line {first})")
            result[key] = self.plain(value_node, (*path, key), copy)
            # Point at the key, not at a nested value that may start on the next line.
            self.lines[(*path, key)] = key_node.start_mark.line + 1
        return result


def _json_object(text: str) -> dict[str, Any] | None:
    """The object if ``text`` is plain JSON that reads the same as YAML, else None."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except ValueError:
        return None  # not JSON, or a duplicate key: the YAML reader explains the problem
    return data if isinstance(data, dict) else None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity read as text in YAML


def _error(node: yaml.Node, problem: str) -> yaml.MarkedYAMLError:
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise _error(key_node, "merge keys (<<) are not supported")
        yield key_node, value_node


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise _error(node, "a key must be a plain value")
    construct = _CONSTRUCTORS.get(node.tag)
    # Timestamps stay strings, as they would be in JSON: event properties are JSON data.
    if construct is None or node.tag == "tag:yaml.org,2002:timestamp":
        return node.value
    try:
        value = construct(_SCALARS, node)
        if type(value) is int:
            str(value)  # a number too long to write out (hexadecimal reads longer) is refused
        return value
    except (ValueError, LookupError):  # `!!int abc`, `!!bool maybe`, 5,000 digits
        kind = node.tag.rsplit(":", 1)[-1]
        message = f"{_shown(node.value)} cannot be read as {_TAGS.get(kind, kind)}"
        raise _error(node, message) from None


_TAGS = {
    "int": "a whole number (of at most 4,300 digits)",
    "float": "a number",
    "bool": "true or false",
}


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:30]!r}... ({len(text)} characters)"


_SCALARS = yaml.constructor.SafeConstructor()
_CONSTRUCTORS: dict[Any, Any] = dict(yaml.constructor.SafeConstructor.yaml_constructors)
