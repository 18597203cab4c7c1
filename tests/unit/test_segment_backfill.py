"""Segment backfill through the one core, and the pure parts of segment sizes: a backfill
trigger makes the history of what the segment reads again from the stored events, moves
the profile in or out, records the change and enters, resumes and exits no journey; the
size over time is worked back from the size now; the chart says what it shows."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from journeyman.domain import history
from journeyman.domain.core import Changes, Known, Snapshot, apply, backfill_trigger
from journeyman.domain.engine import Engine
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event, Instance, Profile
from journeyman.storage.backfills import Backfill, SizeBucket, hour_of, size_rows
from journeyman.web.segment_charts import size_chart
from journeyman.web.segments_view import size_series
from tests.conftest import START

NOW = START + timedelta(days=100)

VIP = """
kind: segment
name: vip
when: count("purchased", "30d") >= {least}
---
kind: template
name: vip_email
channel: email
subject: "VIP"
text: "VIP"
---
kind: journey
name: vip_welcome
entry: {{segment: vip}}
exit:
  - segment_exited: vip
steps:
  - id: hello
    send: vip_email
  - id: later
    wait: 30d
"""


def _purchase(at: datetime, user: str = "u1") -> Event:
    return Event(name="purchased", profile_id=user, timestamp=at, properties={"total": 10})


def _backfill(
    workspace: Workspace,
    profile: Profile,
    log: Sequence[Event],
    before: Sequence[Event] = (),
    running: Sequence[Instance] = (),
    new: bool = False,
) -> tuple[list[str], Changes]:
    engine = Engine(workspace)
    snapshots = {profile.id: Snapshot(profile, list(running), new=new)}
    known = Known(logs={profile.id: list(log)})
    triggers = [*before, backfill_trigger(profile.id, ["vip"], NOW)]
    return apply(engine, snapshots, triggers, NOW, known)


def test_a_backfill_counts_the_stored_events_and_the_profile_joins_without_its_journey(
    workspace: Callable[..., Workspace],
) -> None:
    ws = workspace(VIP.format(least=2))
    log = [_purchase(NOW - timedelta(days=d)) for d in (45, 10, 2)]  # one out of the window
    results, changes = _backfill(ws, Profile(id="u1"), log)
    assert results == ["accepted"]
    profile = changes.profiles["u1"]
    assert list(profile.segments) == ["vip"]
    assert history.count(profile.history["purchased"], 30, NOW) == 2
    assert [(e.name, e.properties) for e in changes.events] == [
        ("segment_entered", {"segment": "vip"})
    ]
    assert [(r.outcome, r.detail) for r in changes.records] == [("segment_entered", "vip")]
    assert changes.instances == {}  # no journey entered: the profile qualified before
    assert changes.effects == []
    assert profile.wake_at == NOW + timedelta(days=20)  # when the 10-day-old one leaves


def test_an_event_of_the_same_batch_is_counted_once(workspace: Callable[..., Workspace]) -> None:
    ws = workspace(VIP.format(least=3))
    stored = [_purchase(NOW - timedelta(days=5))]
    fresh = _purchase(NOW - timedelta(hours=1))
    _, changes = _backfill(ws, Profile(id="u1"), stored, before=[fresh])
    kept = changes.profiles["u1"].history["purchased"]
    assert history.count(kept, 30, NOW) == 2  # the stored one and the batch's, once each
    assert "vip" not in changes.profiles["u1"].segments


def test_a_profile_that_no_longer_qualifies_leaves_but_its_journey_goes_on(
    workspace: Callable[..., Workspace],
) -> None:
    ws = workspace(VIP.format(least=5))
    member = Profile(id="u1", segments={"vip": NOW - timedelta(days=3)})
    running = Instance(
        id="i1",
        profile_id="u1",
        journey="vip_welcome",
        version=ws.journeys["vip_welcome"].version,
        step="later",
        status="waiting",
        waiting="timer",
        entry=_purchase(NOW - timedelta(days=3)),
        wake_at=NOW + timedelta(days=27),
        entered_at=NOW - timedelta(days=3),
    )
    log = [_purchase(NOW - timedelta(days=3))]
    _, changes = _backfill(ws, member, log, running=[running])
    assert changes.profiles["u1"].segments == {}
    assert [e.name for e in changes.events] == ["segment_exited"]
    assert changes.instances == {}  # a backfill moves no journey, exits included


def test_a_profile_not_stored_is_not_made_by_a_backfill(
    workspace: Callable[..., Workspace],
) -> None:
    ws = workspace(VIP.format(least=1))
    results, changes = _backfill(ws, Profile(id="gone"), [_purchase(NOW)], new=True)
    assert results == ["accepted"]
    assert not changes


def test_a_second_backfill_changes_nothing(workspace: Callable[..., Workspace]) -> None:
    ws = workspace(VIP.format(least=1))
    log = [_purchase(NOW - timedelta(days=1))]
    _, first = _backfill(ws, Profile(id="u1"), log)
    _, again = _backfill(ws, first.profiles["u1"], log)
    assert again.events == []
    assert again.records == []


# sizes


def test_entries_and_exits_are_counted_per_segment_and_hour() -> None:
    at = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)

    def change(name: str, segment: str, when: datetime) -> Event:
        return Event(name=name, profile_id="p", timestamp=when, properties={"segment": segment})

    rows = size_rows(
        [
            change("segment_entered", "vip", at),
            change("segment_entered", "vip", at + timedelta(minutes=40)),
            change("segment_exited", "vip", at + timedelta(minutes=50)),
            change("segment_entered", "pro", at),
            _purchase(at),
        ]
    )
    ten, eleven = hour_of(at), hour_of(at + timedelta(hours=1))
    assert rows == [("pro", ten, 1, 0), ("vip", ten, 2, 0), ("vip", eleven, 0, 1)]


def test_the_size_over_time_is_worked_back_from_the_size_now() -> None:
    hour = datetime(2026, 3, 1, 10, tzinfo=UTC)
    buckets = [SizeBucket(hour, 5, 0), SizeBucket(hour + timedelta(hours=3), 1, 3)]
    series = size_series(7, buckets)
    assert series["start"] == 4  # 7 now, less (5 - 0) and (1 - 3)
    assert [(p["at"], p["size"]) for p in series["points"]] == [
        ("2026-03-01T11:00:00+00:00", 9),
        ("2026-03-01T14:00:00+00:00", 7),
    ]
    assert size_series(1, [SizeBucket(hour, 4, 0)])["start"] == 0  # never below 0


def test_a_backfill_shows_its_rate_and_the_time_left() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    running = Backfill(
        "vip:1", "vip", "1", "running", "p", 200, 1000, start, start + timedelta(seconds=4)
    )
    shown = running.progress()
    assert (shown["done"], shown["total"], shown["percent"]) == (200, 1000, 20.0)
    assert (shown["rate"], shown["eta"]) == (50.0, 16.0)
    over = Backfill("vip:1", "vip", "1", "done", "p", 1200, 1000, start, start)
    assert over.progress()["eta"] is None
    assert over.progress()["total"] == 1200  # profiles made meanwhile count too


def test_the_size_chart_is_labelled_and_escapes_the_segment_name() -> None:
    since = datetime(2026, 3, 1, tzinfo=UTC)
    now = since + timedelta(days=30)
    series = size_series(3, [SizeBucket(since + timedelta(days=10), 3, 0)])
    svg = size_chart("<vip>", since, now, series)
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "<title>Size of segment &lt;vip&gt; over time</title>" in svg
    assert "<vip>" not in svg
    assert "Members" in svg
    assert "Time (UTC)" in svg
    points = re.search(r'<polyline class="line" points="([^"]+)"', svg)
    assert points is not None
    ys = [float(pair.split(",")[1]) for pair in points.group(1).split()]
    assert ys[0] > ys[-1]  # it rises: from 0 to 3
