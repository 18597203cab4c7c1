"""Who did what: the pauses, resumes, stops and publishes kept in the store's audit.

:class:`Who` is the person or process behind a command, as its adapter names it: the
console's logged-in user, the ``by`` an API call gave (else ``api``), or ``serve`` for
the publish at start. The runtime keeps one :class:`~journeyman.storage.base.AuditEntry`
per command once it is done, and one per journey a publish changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from journeyman.storage.base import AuditEntry

if TYPE_CHECKING:
    from journeyman.runtime.publish import Plan

__all__ = ["API", "AUDIT_SHOWN", "SERVE", "Who", "publish_entries"]

AUDIT_SHOWN = 50  # the newest entries a journey's page and the API show


@dataclass(frozen=True, slots=True)
class Who:
    by: str
    via: Literal["serve", "console", "api"]


API = Who("api", "api")
SERVE = Who("serve", "serve")


def publish_entries(plan: Plan, who: Who, at: datetime) -> list[AuditEntry]:
    """What a publish that made workspace version ``plan.workspace`` did: one entry for
    the workspace, one per journey it gave a new version, one per journey it removed."""
    version = plan.workspace
    entries = [AuditEntry(at, who.by, who.via, "publish", workspace_version=version)]
    for name in [*plan.new, *plan.changed]:
        journey_version = plan.versions.get(name)
        entries.append(
            AuditEntry(at, who.by, who.via, "publish", name, None, journey_version, version)
        )
    for name in plan.removed:
        entries.append(AuditEntry(at, who.by, who.via, "remove", name, None, None, version))
    return entries
