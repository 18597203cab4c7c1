"""Reading a workspace folder: every ``*.yaml`` / ``*.yml`` file below it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from journeyman.domain.checks import build_workspace
from journeyman.domain.documents import Document, read_documents
from journeyman.domain.model import Workspace
from journeyman.domain.parse import parse_documents
from journeyman.domain.problems import Problem
from journeyman.errors import WorkspaceNotFound

__all__ = ["Loaded", "load_workspace", "workspace_files"]


@dataclass(frozen=True, slots=True)
class Loaded:
    """A workspace (None when it has errors), every problem found, and the files read."""

    workspace: Workspace | None
    problems: list[Problem]
    files: list[Path]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


def workspace_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise WorkspaceNotFound(f"{folder} is not a folder")
    found = [p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(p for p in found if not any(part.startswith(".") for part in p.parts))


def load_workspace(folder: str | Path) -> Loaded:
    """Read, parse and check every document below ``folder``."""
    root = Path(folder)
    files = workspace_files(root)
    documents: list[Document] = []
    problems: list[Problem] = []
    for path in files:
        name = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(Problem(name, 1, "", "", f"cannot read the file: {error}"))
            continue
        found, yaml_problems = read_documents(text, name)
        documents.extend(found)
        problems.extend(yaml_problems)
    parsed = parse_documents(documents)
    parsed.problems[:0] = problems
    if not files:
        parsed.problems.append(Problem(root.as_posix(), 1, "", "", "no .yaml files in this folder"))
    workspace = build_workspace(parsed)
    ordered = sorted(parsed.problems, key=lambda p: (p.file, p.line, p.severity))
    return Loaded(workspace, ordered, files)
