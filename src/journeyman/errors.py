"""Errors journeyman raises to its callers: every one sits under :class:`JourneymanError`.

    JourneymanError
    ├── WorkspaceNotFound      the workspace folder does not exist
    ├── WorkspaceInvalid       the workspace has errors; .problems lists them
    ├── InvalidEvent           an incoming event breaks a rule; .field names it (domain.ingest)
    │   └── NotForBrowsers     a call the client key may not make, HTTP 403 (domain.browser)
    ├── ExpressionError        an expression cannot be compiled (domain.expressions)
    ├── TemplateError          a template cannot be compiled (domain.templates)
    ├── TimeFormatError        a duration, timestamp or time zone cannot be read (domain.times)
    ├── AllowError             an ``allow`` list cannot be read (domain.actions)
    ├── ScheduleError          a schedule of scheduled entry cannot be read (domain.schedules)
    ├── ChannelConfigError     a kind: channel document cannot be used (channels.base)
    ├── MissingVariable        a ``${NAME}`` names an unset environment variable (channels.base)
    ├── RefusedAddress         a call to an address no allow list names (channels.network)
    ├── Overloaded             too much is queued; retry later, HTTP 429 (runtime.processor)
    ├── BusUnavailable         JetStream did not store a message (scaleout.bus)
    ├── ReplayFailed           a dead letter could not be applied again (web.views)
    ├── UnloadableWorkspace    a published workspace version cannot run here (runtime.following)
    ├── UsersError             JOURNEYMAN_CONSOLE_USERS cannot be read (web.auth)
    ├── StorageURLError        a storage URL no backend serves (storage)
    ├── NotShared              a worker was given a database it cannot share (storage)
    ├── NewerSchema            the database was written by a newer journeyman (storage.base)
    ├── StorageUnavailable     the database cannot be reached or opened (storage.base)
    ├── TransferError          a move between databases cannot be made (storage.transfer)
    ├── ImportFailed           an import stops: file unreadable, batch refused (runtime.importing)
    ├── PublicUrlError         links in messages cannot be built on the public URL (runtime.links)
    ├── NoMessage              a simulated reaction answers no message sent (simulator)
    ├── DraftError             a journey cannot be written into its file (drafts)
    ├── TooSlow                a test run, a try or a preview went past its time (deadline)
    ├── TooLong                a test run or a try made more trace lines than it may (journey_tests)
    └── SettingError           a JOURNEYMAN_* setting cannot be read (server)

The ones that report bad input keep the built-in type they refine as a second base
(``InvalidEvent`` and ``TimeFormatError`` are ``ValueError`` s, ``MissingVariable`` a
``LookupError``). Bad input inside a workspace is never an exception: it is a
:class:`~journeyman.domain.problems.Problem` with the file and line.
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
