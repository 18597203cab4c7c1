"""Reading a workspace folder: every ``*.yaml`` / ``*.yml`` file below it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from journeyman.channels.base import ChannelConfigError
from journeyman.channels.config import channel_from_config
from journeyman.domain.checks import build_workspace
from journeyman.domain.documents import Document, read_documents
from journeyman.domain.model import Workspace
from journeyman.domain.parse import Parsed, parse_documents
from journeyman.domain.problems import Problem
from journeyman.domain.times import TimeFormatError, parse_zone
from journeyman.errors import WorkspaceNotFound

__all__ = ["Loaded", "load_texts", "load_workspace", "workspace_files"]


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


def load_workspace(folder: str | Path, env: Mapping[str, str] | None = None) -> Loaded:
    """Read, parse and check every document below ``folder``.

    With ``env``, ``JOURNEYMAN_TIMEZONE`` and ``JOURNEYMAN_MODE`` there override the
    settings document (as ``journeyman serve`` does).
    """
    root = Path(folder)
    files = workspace_files(root)
    texts: dict[str, str] = {}
    unreadable: list[Problem] = []
    for path in files:
        name = path.relative_to(root).as_posix()
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            unreadable.append(
                Problem.of("unreadable-file", name, 1, "", "", f"cannot read the file: {error}")
            )
    if not files:
        unreadable.append(
            Problem.of("no-files", root.as_posix(), 1, "", "", "no .yaml files in this folder")
        )
    loaded = load_texts(texts, root, unreadable, env)
    return Loaded(loaded.workspace, loaded.problems, files)


def load_texts(
    texts: Mapping[str, str],
    root: Path | None = None,
    problems: Sequence[Problem] = (),
    env: Mapping[str, str] | None = None,
) -> Loaded:
    """Parse and check a workspace given as file names and their text.

    ``root`` is where relative paths in channel documents start.
    """
    documents: list[Document] = []
    found_problems = list(problems)
    for name, text in texts.items():
        found, yaml_problems = read_documents(text, name)
        documents.extend(found)
        found_problems.extend(yaml_problems)
    parsed = parse_documents(documents)
    parsed.problems[:0] = found_problems
    _apply_environment(parsed, env or {})
    _check_channels(parsed, root or Path.cwd())
    workspace = build_workspace(parsed)
    if workspace is not None:
        workspace = dataclasses.replace(workspace, sources=dict(texts))
    ordered = sorted(parsed.problems, key=lambda p: (p.file, p.line, p.severity))
    return Loaded(workspace, ordered, [])


def _apply_environment(parsed: Parsed, env: Mapping[str, str]) -> None:
    settings = parsed.settings
    zone, mode = env.get("JOURNEYMAN_TIMEZONE"), env.get("JOURNEYMAN_MODE")
    if zone:
        try:
            settings = dataclasses.replace(settings, timezone=parse_zone(zone))
        except TimeFormatError as error:
            parsed.problems.append(
                Problem.of("environment", "JOURNEYMAN_TIMEZONE", 1, "", "", str(error))
            )
    if mode:
        if mode in ("development", "production"):
            settings = dataclasses.replace(settings, mode=mode)
        else:
            message = f"{mode!r} is not a mode: use development or production"
            parsed.problems.append(Problem.of("environment", "JOURNEYMAN_MODE", 1, "", "", message))
    parsed.settings = settings


class _AnyVariable(Mapping[str, str]):
    """An environment in which every variable is set: checks a channel's shape only.

    The real environment is read when the server starts; here a missing variable must not
    stop `journeyman validate` on a developer's machine.
    """

    def __getitem__(self, key: str) -> str:
        return f"{key.lower()}-value"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return True


def _check_channels(parsed: Parsed, root: Path) -> None:
    for name, config in parsed.channels.items():
        document = parsed.documents[("channel", name)]
        try:
            channel_from_config(config, _AnyVariable(), root=root)
        except ChannelConfigError as error:
            line = document.line_of((error.field,))
            message = f"'{error.field}' {error.message}"
            parsed.problems.append(
                Problem.of("channel", document.file, line, "channel", name, message)
            )
    if parsed.settings.mode != "production":
        return
    used = {template.channel for template in parsed.templates.values()}
    settings = next((d for (k, _), d in parsed.documents.items() if k == "settings"), None)
    for channel in sorted(used - set(parsed.channels)):
        file, line = (settings.file, settings.line) if settings else ("", 1)
        message = f"templates use channel {channel}, which no kind: channel document configures"
        parsed.problems.append(
            Problem.of("missing-channel", file, line, "settings", "", f"production mode: {message}")
        )
