"""A report's days in the time zone it is read in, on a real ``journeyman serve`` (SQLite
file, PostgreSQL): the API's ``?timezone=`` and the console's picked zone (the
``jm_timezone`` cookie) put each entry and its conversion on the day it was there, even
when that is not the UTC day; a zone that is no zone is a 400 naming ``timezone``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_experiments_serve import console_report
from tests.integration.test_serve import accepted
from tests.servers import WRITE_KEY, Journeyman
from tests.waiting import wait_until

pytestmark = pytest.mark.durable

WORKSPACE = """
kind: event
name: signed_up
---
kind: event
name: purchased
---
kind: journey
name: promo
entry: {event: signed_up}
goals:
  - {name: purchased, event: purchased, within: 7d, primary: true}
steps:
  - id: pause
    wait: 7d
"""
USERS = ["ada", "bob", "cy"]


def far_zone(now: datetime) -> str:
    """A zone whose day is not the UTC day now: 14 hours ahead from 10:00 UTC on, else
    12 hours behind."""
    return "Pacific/Kiritimati" if now.hour >= 10 else "Etc/GMT+12"


def test_entries_and_conversions_fall_on_the_day_of_the_zone_asked_for(
    tmp_path: Path, store_url: str
) -> None:
    folder = write_workspace(tmp_path / "ws", WORKSPACE)
    with Journeyman(folder, store_url, tmp_path) as server:
        server.start()
        with server.client(WRITE_KEY) as client, server.client() as admin:
            for user in USERS:
                accepted(client.post("/v1/track", json={"userId": user, "event": "signed_up"}))
            for user in USERS[:2]:
                accepted(client.post("/v1/track", json={"userId": user, "event": "purchased"}))
            wait_until(lambda: conversions(admin) == 2 or None, "two purchases")
            check_days(admin)


def conversions(admin: httpx.Client) -> int:
    found: int = admin.get("/v1/journeys/promo/report").json()["goals"][0]["conversions"]
    return found


def check_days(admin: httpx.Client) -> None:
    (instance,) = admin.get("/v1/profiles/ada").json()["instances"]
    entered = datetime.fromisoformat(instance["entered_at"])
    zone = far_zone(entered.astimezone(UTC))
    local = entered.astimezone(ZoneInfo(zone)).date().isoformat()
    utc = entered.astimezone(UTC).date().isoformat()
    assert local != utc

    def report(**params: str) -> dict[str, object]:
        answer = admin.get("/v1/journeys/promo/report", params=params)
        assert answer.status_code == 200, answer.text
        found: dict[str, object] = answer.json()
        return found

    there = report(timezone=zone)
    assert there["timezone"] == zone
    ((series,),) = [g["over_time"] for g in there["goals"]]  # type: ignore[attr-defined]
    assert [(p["day"], p["entries"], p["conversions"]) for p in series["points"]] == [(local, 3, 2)]
    that_day = report(timezone=zone, **{"from": local, "to": local})
    assert that_day["entries"] == 3
    assert report(timezone=zone, **{"from": utc, "to": utc})["entries"] == 0
    assert report(**{"from": utc, "to": utc})["entries"] == 3  # UTC by default
    assert report()["timezone"] == "UTC"

    csv = admin.get("/v1/journeys/promo/report.csv", params={"timezone": zone}).text
    assert f"day,purchased,all,{local},conversions,2" in csv

    refused = admin.get("/v1/journeys/promo/report", params={"timezone": "Mars/Olympus"})
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "timezone"
    assert "Mars/Olympus" in refused.json()["error"]["message"]

    page = console_report(admin, zone=zone)
    assert f"Day of entry ({zone})" in page
    assert f"<span data-report-zone>{zone}</span>" in page
    assert f">{local[5:]}<" in page  # the chart's one day, as MM-DD
