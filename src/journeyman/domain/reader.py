"""Reading one YAML document's fields with errors that name the field and the rule.

A :class:`Reader` wraps one document and collects :class:`Problem` values instead of
raising, so that one pass over a workspace reports every problem in it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from datetime import time, timedelta
from math import inf
from typing import Any, TypeVar

from journeyman.domain.documents import Document, Path
from journeyman.domain.expressions import Expression, ExpressionError, compile_expression
from journeyman.domain.problems import Problem
from journeyman.domain.templates import Template, TemplateError, compile_template
from journeyman.domain.times import TimeFormatError, parse_clock_time, parse_duration

__all__ = ["NAME", "Reader", "did_you_mean"]

T = TypeVar("T")

# Names of journeys, steps, templates and actions: they appear in ids, `journey.step`
# references and URLs, so they stay plain.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Longer durations are surely mistakes, and would overflow dates once added to a time.
_LONGEST = timedelta(days=36500)


def did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "empty"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


class Reader:
    """Field access on one document; every failure becomes a problem and a ``None``."""

    def __init__(
        self, document: Document, kind: str, name: str, problems: list[Problem], prefix: str = ""
    ) -> None:
        self.document = document
        self.kind = kind
        self.name = name
        self.problems = problems
        self.prefix = prefix

    def within(self, prefix: str) -> Reader:
        """A reader whose messages start with ``prefix`` (such as ``step nudge: ``)."""
        return Reader(self.document, self.kind, self.name, self.problems, prefix)

    def line(self, path: Path) -> int:
        """Where ``path`` was written, as near as is cheap to tell (exact for YAML)."""
        return self.document.line_of(path, exact=False)

    def report(self, code: str, path: Path, message: str) -> None:
        """Record what the check ``code`` found at ``path``, with that check's severity."""
        file, line = self.document.file, self.document.line_of(path)
        message = self.prefix + message
        self.problems.append(Problem.of(code, file, line, self.kind, self.name, message))

    # Shapes

    def mapping(
        self,
        value: Any,
        path: Path,
        allowed: Collection[str],
        required: Collection[str] = (),
        what: str = "",
    ) -> dict[str, Any] | None:
        """``value`` as a mapping whose keys are all allowed and include the required ones."""
        label = what or _label(path)
        if not isinstance(value, dict):
            self.report("type", path, f"{label} must be a mapping, not {describe(value)}")
            return None
        for key in value:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                self.report("unknown-key", (*path, key), f"unknown key '{key}' in {label}{hint}")
        for key in required:
            if key not in value:
                self.report("missing-key", path, f"{label} needs '{key}'")
        return value

    def sequence(self, value: Any, path: Path, what: str = "") -> list[Any] | None:
        if value is None:
            return []
        if not isinstance(value, list):
            label = what or _label(path)
            self.report("type", path, f"{label} must be a list, not {describe(value)}")
            return None
        return value

    # Scalars

    def text(self, value: Any, path: Path) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.report(
            "type", path, f"{_label(path)} must be a non-empty string, not {describe(value)}"
        )
        return None

    def name_of(self, value: Any, path: Path, what: str = "") -> str | None:
        label = what or _label(path)
        if not isinstance(value, str) or not NAME.fullmatch(value):
            self.report(
                "value",
                path,
                f"{label} must be a name of letters, digits, '_' and '-' starting with a "
                f"letter, not {value!r}",
            )
            return None
        return value

    def boolean(self, value: Any, path: Path) -> bool | None:
        if isinstance(value, bool):
            return value
        self.report("type", path, f"{_label(path)} must be true or false, not {describe(value)}")
        return None

    def count(self, value: Any, path: Path, minimum: int = 0) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        message = f"must be a whole number of at least {minimum}, not {value!r}"
        self.report("value", path, f"{_label(path)} {message}")
        return None

    def number(self, value: Any, path: Path) -> float | None:
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < inf:
            return float(value)
        self.report("value", path, f"{_label(path)} must be a number of at least 0, not {value!r}")
        return None

    def choice(self, value: Any, path: Path, choices: Collection[str]) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        listed = ", ".join(choices)
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        self.report("value", path, f"{_label(path)} must be one of {listed}, not {value!r}{hint}")
        return None

    def duration(self, value: Any, path: Path, *, positive: bool = False) -> timedelta | None:
        """A duration; with ``positive``, one of zero is an error too.

        A zero duration is still returned with its error, so that a journey published before
        zero durations were refused reads back as it did (see ``parse.compile_journey``).
        """
        try:
            found = self._convert(value, path, parse_duration, "duration")
        except OverflowError:  # more days than a timedelta can hold
            found = timedelta.max
        if found is not None and found > _LONGEST:
            self.report("duration", path, f"{_label(path)}: {value!r} is longer than 100 years")
            return None
        if positive and found is not None and found <= timedelta(0):
            self.report(
                "zero-duration", path, f"{_label(path)} must be longer than 0s, not {value!r}"
            )
        return found

    def clock(self, value: Any, path: Path) -> time | None:
        return self._convert(value, path, parse_clock_time, "time")

    def _convert(self, value: Any, path: Path, parse: Callable[[Any], T], code: str) -> T | None:
        try:
            return parse(value)
        except TimeFormatError as error:
            self.report(code, path, f"{_label(path)}: {error}")
            return None

    # Compiled code

    def expression(self, value: Any, path: Path) -> Expression | None:
        if isinstance(value, bool | int | float) and not isinstance(value, str):
            value = str(value).lower()  # YAML reads `when: true` as a boolean
        if not isinstance(value, str):
            self.report(
                "type", path, f"{_label(path)} must be an expression, not {describe(value)}"
            )
            return None
        try:
            return compile_expression(value)
        except ExpressionError as error:
            self.report("expression", path, f"{_label(path)}: expression error at {error}")
            return None

    def template(self, value: Any, path: Path, *, escape: bool = False) -> Template | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.report("type", path, f"{_label(path)} must be a string, not {describe(value)}")
            return None
        try:
            return compile_template(value, escape=escape)
        except TemplateError as error:
            self.report("template", path, f"{_label(path)}: Liquid error at {error}")
            return None

    def names(self, value: Any, path: Path, choices: Mapping[str, T]) -> frozenset[T] | None:
        """A list of names from ``choices`` (channels, weekdays), as their values."""
        items = [value] if isinstance(value, str) else self.sequence(value, path)
        if items is None:
            return None
        found: set[T] = set()
        for index, item in enumerate(items):
            picked = self.choice(item, (*path, index), list(choices))
            if picked is not None:
                found.add(choices[picked])
        if not items:
            self.report(
                "missing-key",
                path,
                f"{_label(path)} must name at least one of {', '.join(choices)}",
            )
        return frozenset(found)


def _label(path: Path) -> str:
    """The last named key of ``path``, as users wrote it."""
    for part in reversed(path):
        if isinstance(part, str):
            return f"'{part}'"
    return "the document"
