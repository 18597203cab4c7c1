"""Errors journeyman raises to its callers.

    JourneymanError
    ├── WorkspaceNotFound      the workspace folder does not exist
    ├── WorkspaceInvalid       the workspace has errors; .problems lists them
    ├── ChannelConfigError     a kind: channel document cannot be used (channels.base)
    ├── StorageURLError        a storage URL no backend serves (storage)
    ├── NewerSchema            the database was written by a newer journeyman (storage.base)
    ├── StorageUnavailable     the database cannot be reached or opened (storage.base)
    └── SettingError           a JOURNEYMAN_* setting cannot be read (server)

Bad input inside a workspace is never an exception: it is a
:class:`~journeyman.domain.problems.Problem` with the file and line. Invalid incoming
events raise :class:`~journeyman.domain.ingest.InvalidEvent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from journeyman.domain.problems import Problem

__all__ = ["JourneymanError", "WorkspaceInvalid", "WorkspaceNotFound"]


class JourneymanError(Exception):
    """The root of every error journeyman raises on purpose."""

    exit_code = 1


class WorkspaceNotFound(JourneymanError):
    exit_code = 2


class WorkspaceInvalid(JourneymanError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        errors = [p for p in problems if p.is_error]
        super().__init__(f"the workspace has {len(errors)} error(s)")
        self.problems = list(problems)
