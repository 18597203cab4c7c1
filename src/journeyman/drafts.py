"""A journey's or a template's YAML edited from the JSON document the editor sends,
keeping the rest.

:func:`edit_document` takes a workspace file's text (it may hold several documents) and a
journey's or a template's new document, and gives the file's new text: only that document
changes, and in it only what the new document changes. Untouched keys keep their
comments, order and formatting; a changed scalar changes in place (keeping its quotes);
new keys go at the end of their mapping; removed keys and list items go, with the
comments about them. Lists are matched item by item (steps by ``id``), so a step added
in the middle is inserted there.

How: the document is read with ruamel.yaml's round-trip loader, the new
document is merged into what it read, and the result written again. Where ruamel.yaml
would write an untouched line differently from the file (spacing, flow styles), the
file's line is kept: the lines that change are those ruamel.yaml's output changes
between the document as read and as edited. The new text is read back with the parser's
own YAML reader, and must give exactly the new document.

:func:`unified_diff` compares two texts as ``git diff`` would show them; :func:`located`
turns the problems ``journeyman validate`` finds into the editor's form (the path in the
document, line and column); :func:`form_schema` describes the fields of a journey and of
every step type for the editor's forms, from :mod:`journeyman.domain.fields`.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)
from ruamel.yaml.tokens import CommentToken

from journeyman.domain.documents import Document, Path, read_documents
from journeyman.domain.fields import JOURNEY_FIELDS, STEP_COMMON, STEP_KINDS
from journeyman.domain.parse import CHANNEL_FIELDS
from journeyman.domain.problems import Problem
from journeyman.errors import JourneymanError

__all__ = [
    "DraftError",
    "EditedFile",
    "Kind",
    "edit_document",
    "edit_journey",
    "find_document",
    "find_journey",
    "form_schema",
    "journey_data",
    "located",
    "new_journey",
    "new_template",
    "unified_diff",
]


# The kinds of document the editor edits.
Kind = Literal["journey", "template"]


class DraftError(JourneymanError):
    """The document cannot be written into its file (a file that is no YAML)."""


@dataclass(frozen=True, slots=True)
class EditedFile:
    text: str  # the file's whole new text
    document: Document  # the edited document as the parser reads the new text


# What ruamel.yaml's writer would take apart: a plain line may be as long as it likes.
_WIDTH = 1 << 16
# (mapping indent, sequence indent, dash offset): the layouts tried, the usual first.
_LAYOUTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 3, 1))
_STR = "tag:yaml.org,2002:str"
_BREAKS = frozenset("\x85\u2028\u2029")  # line breaks to YAML 1.1, but not to JSON


def new_journey(name: str) -> dict[str, Any]:
    """The document of a new, minimal journey: an entry to fill in and one end step."""
    return {
        "kind": "journey",
        "name": name,
        "entry": {"event": ""},
        "steps": [{"id": "done", "end": "completed"}],
    }


def new_template(name: str) -> dict[str, Any]:
    """The document of a new email template: a subject and a text to fill in."""
    return {"kind": "template", "name": name, "channel": "email", "subject": "", "text": ""}


def find_document(text: str, file: str, kind: Kind, name: str) -> Document | None:
    """The ``kind`` document named ``name`` in a file's text (None: not there)."""
    for document in read_documents(text, file)[0]:
        data = document.data
        if isinstance(data, dict) and data.get("kind") == kind and data.get("name") == name:
            return document
    return None


def find_journey(text: str, file: str, name: str) -> Document | None:
    """The journey ``name``'s document in a file's text (None: not there)."""
    return find_document(text, file, "journey", name)


def journey_data(document: Document) -> dict[str, Any]:
    """A journey's (or a template's) document as JSON data (times as ISO 8601 text)."""
    found: dict[str, Any] = msgspec.to_builtins(document.data, str_keys=True)
    return found


def edit_journey(text: str, file: str, name: str, document: Mapping[str, Any]) -> EditedFile:
    """``text`` with the journey ``name``'s document made ``document``: :func:`edit_document`."""
    return edit_document(text, file, "journey", name, document)


def edit_document(
    text: str, file: str, kind: Kind, name: str, document: Mapping[str, Any]
) -> EditedFile:
    """``text`` with the ``kind`` document ``name`` made ``document`` (added to the end
    of the file when the file has no such document). :class:`DraftError` when ``text``
    is no YAML."""
    spans = _spans(text)
    for start, end, on_marker in spans:
        old = find_document(text[start:end], file, kind, name)
        if old is None:
            continue
        chunk = _edited(text[start:end], old.data, document)
        new = text[:start] + ("\n" if on_marker else "") + chunk + text[end:]
        found = _checked(new, file, kind, name, document)
        if found is None:  # the merge misread something: write the document anew
            new = text[:start] + ("\n" if on_marker else "") + _fresh_text(document) + text[end:]
            found = _checked(new, file, kind, name, document)
        if found is None:
            raise DraftError(f"{file}: the {kind} {name} cannot be written into this file")
        return EditedFile(new, found)
    separator = "" if not text.strip() else ("---\n" if text.endswith("\n") else "\n---\n")
    new = text + separator + _fresh_text(document)
    found = _checked(new, file, kind, name, document)
    if found is None:
        raise DraftError(f"{file}: the {kind} {name} cannot be written into this file")
    return EditedFile(new, found)


def _checked(
    text: str, file: str, kind: Kind, name: str, document: Mapping[str, Any]
) -> Document | None:
    """The document as the parser reads ``text``, if it is ``document``."""
    found = find_document(text, file, kind, name)
    if found is None or not _same(journey_data(found), document):
        return None
    return found


def _spans(text: str) -> list[tuple[int, int, bool]]:
    """Where each document of ``text`` is: (start, end, whether it starts on its ``---``
    line); the start is at a line's beginning, after any ``---`` line."""
    spans: list[tuple[int, int, bool]] = []
    start, on_marker = 0, False
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.DocumentStartEvent):
                start, on_marker = _content_start(text, event)
            elif isinstance(event, yaml.DocumentEndEvent):
                spans.append((start, _index(event.start_mark), on_marker))
    except yaml.YAMLError as error:
        raise DraftError(f"the file is no YAML: {error}") from None
    return spans


def _index(mark: Any) -> int:
    return int(mark.index) if mark is not None else 0


def _content_start(text: str, event: yaml.DocumentStartEvent) -> tuple[int, bool]:
    if not event.explicit:
        return text.rfind("\n", 0, _index(event.start_mark)) + 1, False
    after = _index(event.end_mark)
    line_end = text.find("\n", after)
    line_end = len(text) if line_end < 0 else line_end
    rest = text[after:line_end].strip()
    if not rest or rest.startswith("#"):
        return min(line_end + 1, len(text)), False
    return after, True  # content on the `---` line: it moves to a line of its own


# the merge


class _Representer(RoundTripRepresenter):
    """Floats as the parser (YAML 1.1) reads them: 5e-324 would be text to it."""

    def represent_json_float(self, value: float) -> Any:
        mantissa, e, exponent = repr(value).partition("e")
        if e and "." not in mantissa:
            mantissa += ".0"
        return self.represent_scalar("tag:yaml.org,2002:float", mantissa + e + exponent)


_Representer.add_representer(float, _Representer.represent_json_float)


def _yaml(layout: tuple[int, int, int]) -> YAML:
    writer = YAML(typ="rt")
    writer.Representer = _Representer
    writer.preserve_quotes = True
    writer.width = _WIDTH
    writer.brace_single_entry_mapping_in_flow_sequence = True
    mapping, sequence, offset = layout
    writer.indent(mapping=mapping, sequence=sequence, offset=offset)
    return writer


def _dump(writer: YAML, data: Any) -> str:
    out = io.StringIO()
    writer.dump(data, out)
    return out.getvalue()


def _edited(chunk: str, old: Any, new: Mapping[str, Any]) -> str:
    """The document ``chunk`` (which the parser reads as ``old``) edited to ``new``."""
    try:
        layout, base = _layout(chunk)
        data = _yaml(layout).load(chunk)
    except YAMLError:
        return _fresh_text(new)
    if not isinstance(data, CommentedMap):
        return _fresh_text(new)
    _merge_map(data, old if isinstance(old, dict) else {}, new)
    return _keep_lines(chunk, base, _dump(_yaml(layout), data))


def _layout(chunk: str) -> tuple[tuple[int, int, int], str]:
    """The indentation that writes ``chunk`` most like it is written, and that writing."""
    best: tuple[float, tuple[int, int, int], str] | None = None
    lines = chunk.splitlines()
    for layout in _LAYOUTS:
        written = _dump(_yaml(layout), _yaml(layout).load(chunk))
        if written == chunk:
            return layout, written
        score = difflib.SequenceMatcher(None, lines, written.splitlines(), autojunk=False).ratio()
        if best is None or score > best[0]:
            best = (score, layout, written)
    assert best is not None
    return best[1], best[2]


def _keep_lines(original: str, base: str, edited: str) -> str:
    """``edited``, but with ``original``'s lines wherever ``edited`` did not change what
    the writer made of it (``base``)."""
    if base == original:
        return edited
    ours, theirs, written = (t.splitlines(keepends=True) for t in (original, base, edited))
    units = _units(theirs, ours)
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, theirs, written, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.extend(written[j1:j2])
            continue
        for a, b, c, d in units:
            if a == b:  # lines the writer drops: kept when inside the unchanged stretch
                if i1 < a < i2 or (a == i1 == 0) or (a == i2 == len(theirs)):
                    out.extend(ours[c:d])
            elif i1 <= a and b <= i2:
                out.extend(ours[c:d])
            elif a < i2 and b > i1:
                out.extend(theirs[max(a, i1) : min(b, i2)])
    return "".join(out)


def _units(theirs: list[str], ours: list[str]) -> list[tuple[int, int, int, int]]:
    """The writer's lines [a, b) that stand for the file's lines [c, d), as small as can be."""
    units: list[tuple[int, int, int, int]] = []
    matcher = difflib.SequenceMatcher(None, theirs, ours, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            units.extend((i1 + k, i1 + k + 1, j1 + k, j1 + k + 1) for k in range(i2 - i1))
        else:
            units.append((i1, i2, j1, j2))
    return units


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value, str_keys=True)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _merge_map(node: CommentedMap, old: dict[str, Any], new: Mapping[str, Any]) -> None:
    keys = {str(key): key for key in node}
    for shown, key in list(keys.items()):
        if shown not in new:
            _remove_key(node, key)
            del keys[shown]
    for shown, value in new.items():
        if shown in keys:
            key = keys[shown]
            _set(node, key, _merged(node[key], old.get(shown), value))
        else:
            _append_key(node, shown, _fresh(value))


def _merged(current: Any, old: Any, new: Any) -> Any:
    """What replaces ``current`` (which the parser read as ``old``) to make it ``new``."""
    if _same(_plain(old), new) and _same_shape(current, new):
        return current
    if isinstance(current, CommentedMap) and isinstance(new, dict):
        _merge_map(current, old if isinstance(old, dict) else {}, new)
        return current
    if isinstance(current, CommentedSeq) and isinstance(new, list):
        _merge_seq(current, old if isinstance(old, list) else [], new)
        return current
    if isinstance(new, dict | list):
        return _in_flow(current, _fresh(new))
    return _scalar(new, current)


def _same_shape(current: Any, new: Any) -> bool:
    if isinstance(new, dict):
        return isinstance(current, dict)
    if isinstance(new, list):
        return isinstance(current, list)
    return not isinstance(current, dict | list)


def _set(node: CommentedMap | CommentedSeq, key: Any, value: Any) -> None:
    """``node[key] = value``, the comment lines after the old value staying after it."""
    if node[key] is value:
        return
    rest = _take_rest(_tail_of(node, key))
    node[key] = value
    _give_rest(_tail_of(node, key), rest)


def _merge_seq(node: CommentedSeq, old: list[Any], new: list[Any]) -> None:
    """Items matched by their ids (or names, or whole values); unmatched ones replaced
    in place, removed, or inserted where they stand in ``new``."""
    olds = [*old, *([None] * (len(node) - len(old)))][: len(node)]
    matcher = difflib.SequenceMatcher(
        None, [_identity(v) for v in olds], [_identity(v) for v in new], autojunk=False
    )
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        paired = min(i2 - i1, j2 - j1) if tag in ("equal", "replace") else 0
        for k in range(paired):
            _set(node, i1 + k, _merged(node[i1 + k], olds[i1 + k], new[j1 + k]))
        for index in range(i2 - 1, i1 + paired - 1, -1):
            _remove_item(node, index)
        if j2 - j1 > paired:
            _insert_items(node, i1 + paired, [_fresh(v) for v in new[j1 + paired : j2]])


def _identity(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("id", "name"):
            if isinstance(value.get(key), str):
                return f"{key}:{value[key]}"
    return json.dumps(_plain(value), sort_keys=True)


def _fresh(value: Any) -> Any:
    """New YAML for a JSON value."""
    if isinstance(value, dict):
        node = CommentedMap()
        for key, item in value.items():
            node[_key(key)] = _fresh(item)
        return node
    if isinstance(value, list):
        return CommentedSeq(_fresh(item) for item in value)
    return _scalar(value, None)


def _scalar(value: Any, current: Any) -> Any:
    """``value`` in the quoting ``current`` had, and quoted where the parser (YAML 1.1)
    would read it plain as something other than text (``yes``, ``1:30``)."""
    if not isinstance(value, str):
        return value
    if _BREAKS.intersection(value):  # written unescaped, the parser would break the line
        return DoubleQuotedScalarString(value)
    style: Callable[[str], Any] | None = None
    if isinstance(current, LiteralScalarString | FoldedScalarString):
        style = LiteralScalarString if "\n" in value and _block(value) else None
    elif isinstance(current, DoubleQuotedScalarString):
        style = DoubleQuotedScalarString
    elif isinstance(current, SingleQuotedScalarString):
        printable = value.isprintable()
        style = SingleQuotedScalarString if printable else DoubleQuotedScalarString
    if style is None and "\n" in value and _block(value):
        style = LiteralScalarString
    if style is None and _read_as_other(value):
        style = DoubleQuotedScalarString
    return style(value) if style is not None else value


def _block(text: str) -> bool:
    """Whether ``text`` reads back the same as a block (``|``): lines of printable text."""
    printable = all(c == "\n" or c.isprintable() for c in text)
    return printable and bool(text.strip()) and text == text.rstrip(" ")


def _key(key: str) -> Any:
    """A new key: on one line, quoted where it must be."""
    return DoubleQuotedScalarString(key) if "\n" in key else _scalar(key, None)


def _read_as_other(text: str) -> bool:
    resolver = yaml.resolver.Resolver()
    resolved = resolver.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(resolved != _STR)


def _fresh_text(document: Mapping[str, Any]) -> str:
    return _dump(_yaml(_LAYOUTS[0]), _fresh(dict(document)))


# comments: ruamel.yaml keeps the lines after a value (a comment at its end, then blank
# and comment lines) with the value; they belong before whatever comes next.

_Tail = tuple[CommentedMap | CommentedSeq, Any, int] | None  # (the collection, key or index, slot)


def _tail(node: Any) -> _Tail:
    """Where the lines after ``node``, a block collection, are kept."""
    if not isinstance(node, CommentedMap | CommentedSeq) or not node or node.fa.flow_style():
        return None
    last = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
    return _tail_of(node, last)


def _tail_of(node: CommentedMap | CommentedSeq, key: Any) -> _Tail:
    value = node[key]
    if isinstance(value, CommentedMap | CommentedSeq) and value and not value.fa.flow_style():
        return _tail(value)
    return (node, key, 2 if isinstance(node, CommentedMap) else 0)


def _token(tail: _Tail) -> CommentToken | None:
    if tail is None:
        return None
    node, key, slot = tail
    found = node.ca.items.get(key)
    if found is None or len(found) <= slot:
        return None
    token = found[slot]
    return token if isinstance(token, CommentToken) else None


def _take_rest(tail: _Tail) -> str:
    """Take the lines after a value's own line from where they are kept; a comment at
    the end of the value's line stays."""
    token = _token(tail)
    if token is None:
        return ""
    value: str = token.value
    own, _, rest = value.partition("\n")
    assert tail is not None
    if isinstance(tail[0][tail[1]], LiteralScalarString | FoldedScalarString):
        own, rest = "", value  # a block of text ended its line: every line is after it
    if own.strip():
        token.value = own + "\n"
    else:
        node, key, slot = tail
        node.ca.items[key][slot] = None
        flow = getattr(node[key], "ca", None)  # a flow collection keeps it too
        if flow is not None and flow.comment and flow.comment[0] is token:
            flow.comment[0] = None
    return rest


def _give_rest(tail: _Tail, rest: str) -> None:
    """Keep ``rest`` (lines) after the value ``tail`` names, after its own comment."""
    if not rest or tail is None:
        return
    token = _token(tail)
    if token is not None:
        own = token.value.partition("\n")[0]
        token.value = (own if own.strip() else "") + "\n" + rest
        return
    node, key, slot = tail
    slots = node.ca.items.setdefault(key, [None] * (4 if slot == 2 else 2))
    value = node[key]
    # A block of text ends its last line itself; any other value leaves it open.
    lead = "" if isinstance(value, LiteralScalarString | FoldedScalarString) else "\n"
    slots[slot] = token = CommentToken(lead + rest, CommentMark(0), None)
    if isinstance(value, CommentedMap | CommentedSeq):  # a flow collection: it writes it
        value.ca.comment = [token, None]


def _in_flow(parent: Any, value: Any) -> Any:
    """``value`` written in flow style (``{a: 1}``, ``[a, b]``) if ``parent`` is."""
    if isinstance(parent, CommentedMap | CommentedSeq) and parent.fa.flow_style():
        _flow(value)
    return value


def _flow(value: Any) -> None:
    if isinstance(value, CommentedMap | CommentedSeq):
        value.fa.set_flow_style()
        for item in value.values() if isinstance(value, CommentedMap) else value:
            _flow(item)


def _take_ends(node: Any) -> str:
    """Take the comment lines kept at the end of the collections that end ``node``."""
    found = ""
    while isinstance(node, CommentedMap | CommentedSeq) and node:
        if node.ca.end:
            found += "".join(t.value for t in node.ca.end if isinstance(t, CommentToken))
            node.ca.end = []
        node = node[list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1]
    return found


def _append_key(node: CommentedMap, key: str, value: Any) -> None:
    rest = _take_rest(_tail(node)) + (_take_ends(node[list(node)[-1]]) if node else "")
    key = _key(key)
    node[key] = _in_flow(node, value)
    _give_rest(_tail_of(node, key), rest)


def _remove_key(node: CommentedMap, key: Any) -> None:
    keys = list(node)
    position = keys.index(key)
    rest = _take_rest(_tail_of(node, key))
    if position > 0:
        _take_rest(_tail_of(node, keys[position - 1]))  # the lines about the key removed
        _give_rest(_tail_of(node, keys[position - 1]), rest)
    node.ca.items.pop(key, None)
    del node[key]


def _remove_item(node: CommentedSeq, index: int) -> None:
    rest = _take_rest(_tail_of(node, index))
    if index > 0:
        _take_rest(_tail_of(node, index - 1))
        _give_rest(_tail_of(node, index - 1), rest)
    del node[index]


def _insert_items(node: CommentedSeq, index: int, items: list[Any]) -> None:
    rest = ""
    if index > 0:
        rest = _take_rest(_tail_of(node, index - 1)) + _take_ends(node[index - 1])
    for offset, item in enumerate(items):
        node.insert(index + offset, _in_flow(node, item))
    _give_rest(_tail_of(node, index + len(items) - 1), rest)


# diffs and problems


def unified_diff(old: str, new: str, file: str) -> str:
    """``old`` against ``new`` as ``git diff`` shows a change to ``file``."""
    lines = difflib.unified_diff(_lines(old), _lines(new), fromfile=f"a/{file}", tofile=f"b/{file}")
    return "".join(lines)


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def located(problems: Iterable[Problem], document: Document, text: str) -> list[dict[str, Any]]:
    """Each problem as the editor shows it: the message ``journeyman validate`` prints,
    with the path in the journey's document it is about, and its line and column in
    ``text`` (the file's text; the column is null when it cannot be told)."""
    lines = text.splitlines()
    document.line_of(())  # works the lines out, if the document was read as JSON
    paths: dict[int, Path] = {}
    for where, line in sorted(document.lines.items(), key=lambda item: len(item[0])):
        paths.setdefault(line, where)
    found = []
    for problem in problems:
        path = paths.get(problem.line) if problem.file == document.file else None
        shown = lines[problem.line - 1] if 0 < problem.line <= len(lines) else ""
        found.append(
            {
                "path": _path_text(path) if path is not None else None,
                "file": problem.file,
                "line": problem.line,
                "column": _column(shown, path) if path is not None else None,
                "severity": problem.severity,
                "code": problem.code,
                "message": str(problem),
            }
        )
    return found


def _path_text(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _column(line: str, path: Path) -> int | None:
    key = path[-1] if path else None
    if isinstance(key, str):
        at = line.find(f"{key}:")
        if at >= 0:
            return at + 1
    stripped = line.lstrip(" -")
    return len(line) - len(stripped) + 1 if stripped else None


# the editor's form


def form_schema(completions: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a journey, of each step type and of each channel's templates, and
    what to complete names with."""
    steps = {
        kind: {
            "help": step.help,
            "fields": {
                **{
                    name: field.as_json()
                    for name, field in STEP_COMMON.items()
                    if name != "next" or step.goes_on
                },
                **{name: field.as_json() for name, field in step.fields.items()},
            },
            "edges": list(step.edges),
        }
        for kind, step in STEP_KINDS.items()
    }
    journey = {name: field.as_json() for name, field in JOURNEY_FIELDS.items()}
    template = {"channels": {channel: list(keys) for channel, keys in CHANNEL_FIELDS.items()}}
    return {
        "journey": journey,
        "steps": steps,
        "template": template,
        "completions": dict(completions),
    }
