"""Problems found in a workspace, reported as ``file:line: kind name: message``.

Every problem has a code, the check that found it, and the check decides its severity
(:data:`CHECKS`). The rule: whatever makes a journey unable to run, or leaves what it does
ambiguous, is an **error** and blocks publishing; a path that can never be taken, or a
value nothing provides, while the journey still runs as written, is a **warning** that
names it. docs/workspace.md lists every check with its severity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CHECKS", "Problem", "Severity"]

Severity = Literal["error", "warning"]

# code -> severity, one entry per check; tests keep docs/workspace.md in step with it.
CHECKS: dict[str, Severity] = {
    # files and documents
    "unreadable-file": "error",
    "no-files": "error",
    "yaml": "error",
    "environment": "error",
    "kind": "error",
    "duplicate": "error",
    # the shape of a document
    "unknown-key": "error",
    "missing-key": "error",
    "type": "error",
    "value": "error",
    "one-of": "error",
    # values
    "duration": "error",
    "zero-duration": "error",
    "time": "error",
    "expression": "error",
    "template": "error",
    "schema": "error",
    # actions and channels
    "url": "error",
    "secret": "error",
    "private-address": "error",
    "allowed-address": "warning",
    "channel": "error",
    "unused-channel": "warning",
    "missing-channel": "error",
    # subscriptions and unsubscribe
    "topic-channel": "error",
    "no-topic": "warning",
    "no-unsubscribe-link": "warning",
    # journeys
    "reserved-trait": "error",
    "reserved-event": "error",
    "reference": "error",
    "link": "error",
    "branch-otherwise": "error",
    "split-weights": "error",
    "zero-weight": "warning",
    "unreachable-step": "warning",
    "instant-loop": "error",
    "jump-loop": "error",
    "reaction-to": "error",
    "wait-too-long": "error",
    "timeout-never-taken": "warning",
    "unknown-trait": "warning",
    "unknown-property": "warning",
    # segments
    "segment-loop": "error",
    # experiments
    "experiment-variants": "error",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or, as a warning, doubtful) in a workspace file."""

    file: str
    line: int
    kind: str
    name: str
    message: str
    severity: Severity = "error"
    code: str = ""  # the check that found it: a key of CHECKS

    def __str__(self) -> str:
        where = f"{self.kind} {self.name}: " if self.kind and self.name else ""
        if self.kind and not self.name:
            where = f"{self.kind}: "
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {prefix}{where}{self.message}"

    @classmethod
    def of(cls, code: str, file: str, line: int, kind: str, name: str, message: str) -> Problem:
        """A problem found by the check ``code``, with that check's severity."""
        return cls(file, line, kind, name, message, CHECKS[code], code)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def as_dict(self) -> dict[str, Any]:
        """As the HTTP API and the console answer it; ``message`` is the printed line."""
        return {
            "file": self.file,
            "line": self.line,
            "severity": self.severity,
            "code": self.code,
            "message": str(self),
        }
