"""Problems found in a workspace, reported as ``file:line: kind name: message``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or, as a warning, doubtful) in a workspace file."""

    file: str
    line: int
    kind: str
    name: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.kind} {self.name}: " if self.kind and self.name else ""
        if self.kind and not self.name:
            where = f"{self.kind}: "
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {prefix}{where}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"
