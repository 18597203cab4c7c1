"""YAML text to plain documents that remember where each value was written.

A workspace file may hold several documents separated by ``---``. Each becomes a
:class:`Document`: the plain data (dicts, lists, strings, numbers, booleans, None) and a
map from every path inside it to the line it starts on, so that a problem found later
can point at ``file:line``.
"""

from __future__ import annotations

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

    def line_of(self, path: Path) -> int:
        """The line of ``path``, or of its nearest enclosing value that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


def read_documents(text: str, file: str) -> tuple[list[Document], list[Problem]]:
    """Split ``text`` into documents; a YAML error becomes a problem with its line."""
    documents: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None:
                continue
            document = Document(file=file, line=node.start_mark.line + 1, data=None)
            document.data = _plain(node, (), document.lines)
            documents.append(document)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = " ".join(part for part in (error.context, error.problem) if part)
        return documents, [Problem(file, line, "", "", f"YAML error: {message}")]
    except yaml.YAMLError as error:
        return documents, [Problem(file, 1, "", "", f"YAML error: {error}")]
    return documents, []


def _plain(node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in _pairs(node):
            key = _scalar(key_node)
            key = key if isinstance(key, str) else str(key)
            result[key] = _plain(value_node, (*path, key), lines)
            # Point at the key, not at a nested value that may start on the next line.
            lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, index), lines) for index, item in enumerate(node.value)]
    return _scalar(node)


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise yaml.constructor.ConstructorError(
                None, None, "merge keys (<<) are not supported", key_node.start_mark
            )
        yield key_node, value_node


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a key must be a plain value", node.start_mark
        )
    construct = _CONSTRUCTORS.get(node.tag)
    # Timestamps stay strings, as they would be in JSON: event properties are JSON data.
    if construct is None or node.tag == "tag:yaml.org,2002:timestamp":
        return node.value
    return construct(_SCALARS, node)


_SCALARS = yaml.constructor.SafeConstructor()
_CONSTRUCTORS: dict[Any, Any] = dict(yaml.constructor.SafeConstructor.yaml_constructors)
