"""The report's conversion over time (Wilson intervals checked against statsmodels), its
days filter, its steps per arm, its CSV, and the SVG charts of the Report tab: labelled,
bands drawn, every name escaped."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from journeyman.report import CSV_COLUMNS, Days, journey_report, report_csv, wilson
from journeyman.simulator import Simulator
from journeyman.storage.base import Counter
from journeyman.web.report_charts import conversion_chart, funnel_chart, time_chart
from journeyman.web.report_view import parse_days
from journeyman.wire import Problem
from tests.engine_helpers import after, journey, sign_up
from tests.unit.test_goals import GOALS, HOLDOUT, buy, counters

Simulate = Callable[..., Simulator]
SVG = "{http://www.w3.org/2000/svg}"


def two_days(sim: Simulator) -> None:
    """Twenty users enter on the first day, twenty on the next; every third buys."""
    for index in range(40):
        user = f"u{index:02}"
        sign_up(sim, user, at=after("0s" if index < 20 else "1d"))
        if index % 3 == 0:
            buy(sim, "1d1h" if index >= 20 else "1h", user=user)


def test_conversion_over_time_is_cumulative_by_day_of_entry_with_wilson_intervals(
    simulate: Simulate,
) -> None:
    from statsmodels.stats.proportion import proportion_confint

    sim = simulate(journey(HOLDOUT, goals=GOALS))
    two_days(sim)
    report = journey_report(sim.workspace.journeys["j"], counters(sim.tallies), None)
    series = {s["name"]: s["points"] for s in report["goals"][0]["over_time"]}
    assert set(series) == {"held_out", "treated"}
    held = series["held_out"]
    assert [p["day"] for p in held] == ["2026-01-05", "2026-01-06"]
    last = held[-1]
    assert last["cumulative_entries"] == sum(p["entries"] for p in held)
    arm = next(a for a in report["goals"][0]["arms"] if a["name"] == "held_out")
    assert (last["cumulative_entries"], last["cumulative_conversions"]) == (
        arm["entries"],
        arm["conversions"],
    )
    low, high = proportion_confint(arm["conversions"], arm["entries"], method="wilson")
    assert (last["low"], last["high"]) == pytest.approx((low, high), rel=1e-9)


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (3, 10), (10, 10), (120, 1000)])
def test_wilson_matches_statsmodels(successes: int, trials: int) -> None:
    from statsmodels.stats.proportion import proportion_confint

    expected = proportion_confint(successes, trials, method="wilson")
    assert wilson(successes, trials) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_a_range_of_days_counts_only_the_entries_of_those_days(simulate: Simulate) -> None:
    sim = simulate(journey(HOLDOUT, goals=GOALS))
    two_days(sim)
    model = sim.workspace.journeys["j"]
    second = Days(date(2026, 1, 6), date(2026, 1, 6))
    whole = journey_report(model, counters(sim.tallies), None)
    report = journey_report(model, counters(sim.tallies), None, second)
    assert (whole["entries"], report["entries"]) == (40, 20)
    assert report["range"] == {"from": "2026-01-06", "to": "2026-01-06"}
    purchased = report["goals"][0]
    assert purchased["conversions"] == len([i for i in range(20, 40) if i % 3 == 0])
    assert sum(a["entries"] for a in report["arms"]) == 20
    days = {p["day"] for s in purchased["over_time"] for p in s["points"]}
    assert days == {"2026-01-06"}


def test_steps_count_arrivals_and_outcomes_per_arm_from_the_counters(
    simulate: Simulate,
) -> None:
    sim = simulate(journey(HOLDOUT, goals=GOALS))
    two_days(sim)
    model = sim.workspace.journeys["j"]
    report = journey_report(model, counters(sim.tallies), None)
    hello = next(s for s in report["steps"] if s["id"] == "hello")
    held = [i for i in sim.instances.values() if i.arm == "held_out"]
    treated = 40 - len(held)
    assert (hello["type"], hello["template"], hello["reached"]) == ("send", "hello_email", 40)
    assert hello["counts"] == {"delivered": treated, "sent": treated, "skipped": len(held)}
    assert hello["numbers"] == {
        "entered": 40,
        "waiting": 0,
        "passed": treated,
        "left": 0,
        "skipped": len(held),
        "capped": 0,
        "dropped": 0,
        "failed": 0,
    }
    arms = {a["name"]: a for a in hello["arms"]}
    assert (arms["held_out"]["reached"], arms["held_out"]["counts"]) == (
        len(held),
        {"skipped": len(held)},
    )
    assert arms["held_out"]["numbers"]["skipped"] == len(held)
    assert arms["held_out"]["engagement"]["sent"] == 0  # held out: no message
    assert arms["treated"]["counts"] == {"delivered": treated, "sent": treated}
    assert arms["treated"]["numbers"]["passed"] == treated
    assert arms["treated"]["engagement"]["sent"] == treated
    assert hello["engagement"]["sent"] == treated
    assert hello["engagement"]["rates"]["opened"] == 0.0


def test_parse_days_names_the_field_and_the_rule() -> None:
    assert parse_days("2026-01-01", None) == Days(date(2026, 1, 1), None)
    for start, end, field in [("yesterday", None, "from"), (None, "2026-13-01", "to")]:
        with pytest.raises(Problem) as caught:
            parse_days(start, end)
        assert (caught.value.status, caught.value.body["error"]["field"]) == (400, field)
    with pytest.raises(Problem) as caught:
        parse_days("2026-02-01", "2026-01-01")
    assert caught.value.body["error"]["rule"] == "range"


# the charts

NASTY = '<script>alert("x")</script>&'


def points(*rates: tuple[float, float, float]) -> list[dict[str, object]]:
    return [
        {
            "day": f"2026-01-{index + 1:02}",
            "rate": rate,
            "low": low,
            "high": high,
            "cumulative_entries": 10,
        }
        for index, (rate, low, high) in enumerate(rates)
    ]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_the_conversion_chart_is_labelled_and_draws_a_band_and_a_line_per_arm() -> None:
    series = [
        {"name": "emailed", "points": points((0.2, 0.1, 0.3), (0.25, 0.18, 0.33))},
        {"name": "control", "points": points((0.1, 0.02, 0.2), (0.12, 0.06, 0.2))},
    ]
    root = parse(conversion_chart("purchased", series, ["control"]))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "Day of entry (UTC)" in texts
    assert "Converted to purchased" in texts
    assert {"01-01", "01-02"} <= set(texts)
    assert "0%" in texts
    assert root.get("aria-label", "").startswith("Conversion to purchased over time")
    bands = [p for p in root.iter(f"{SVG}polygon") if p.get("class") == "band"]
    assert [b.get("data-band") for b in bands] == ["emailed", "control"]
    assert all(len((b.get("points") or "").split()) == 4 for b in bands)
    lines = list(root.iter(f"{SVG}polyline"))
    assert len(lines) == 2
    assert lines[1].get("stroke-dasharray")  # the holdout is dashed (and grey)


def test_charts_escape_every_name() -> None:
    series = [{"name": NASTY, "points": points((0.2, 0.1, 0.3))}]
    steps = [{"id": NASTY, "reached": 3}]
    goals = [
        {"name": NASTY, "time_to_convert": {"median_seconds": 60.0, "p90_seconds": 7200.0}},
    ]
    for svg in (
        conversion_chart(NASTY, series),
        funnel_chart(5, steps),
        time_chart(goals),
    ):
        assert "<script>" not in svg
        root = parse(svg)  # well formed: nothing broke out of an attribute or a text
        assert any(NASTY in (t.text or "") for t in root.iter()) or any(
            NASTY in v for t in root.iter() for v in t.attrib.values()
        )


def test_the_funnel_and_the_time_chart_say_their_numbers() -> None:
    funnel = parse(funnel_chart(40, [{"id": "hello", "reached": 30}]))
    texts = [t.text for t in funnel.iter(f"{SVG}text")]
    assert "Entered" in texts
    assert "hello" in texts
    assert "30 · 75%" in texts
    goals = [{"name": "p", "time_to_convert": {"median_seconds": 3600.0, "p90_seconds": 172800}}]
    timed = [t.text for t in parse(time_chart(goals)).iter(f"{SVG}text")]
    assert {"median 1h", "p90 2d", "Time from entry to the goal"} <= set(timed)
    assert "No entries yet" in funnel_chart(0, [])
    assert "No entries in this range yet" in conversion_chart("p", [])


# CSV


def test_the_csv_holds_the_report_in_rows_that_a_spreadsheet_reads_safely(
    simulate: Simulate,
) -> None:
    sim = simulate(journey(HOLDOUT, goals=GOALS))
    two_days(sim)
    report = journey_report(sim.workspace.journeys["j"], counters(sim.tallies), None)
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert tuple(rows[0]) == CSV_COLUMNS
    cells = {tuple(r[:5]): r[5] for r in rows[1:]}
    assert cells[("journey", "j", "", "", "entries")] == "40"
    held = next(a for a in report["goals"][0]["arms"] if a["name"] == "held_out")
    assert cells[("goal", "purchased", "held_out", "", "conversions")] == str(held["conversions"])
    lift = next(a for a in report["goals"][0]["arms"] if a["name"] == "treated")["lift"]
    assert float(cells[("goal", "purchased", "treated", "", "p_value")]) == lift["p_value"]
    assert cells[("day", "purchased", "held_out", "2026-01-06", "entries")].isdigit()
    assert cells[("step", "hello", "", "", "reached")] == "40"
    # a name a spreadsheet would run as a formula is written as text
    tricky = dict(report, journey="=HYPERLINK(1)")
    assert "\r\njourney,'=HYPERLINK(1),," in report_csv(tricky)


def test_counters_without_days_still_report(workspace: Callable[..., object]) -> None:
    ws = workspace(journey(HOLDOUT, goals=GOALS))
    old = [Counter(1, "", "", "entered", 3, 0.0)]  # kept before counters by day existed
    report = journey_report(ws.journeys["j"], old, 1)  # type: ignore[attr-defined]
    assert report["entries"] == 3
    assert all(s["points"] == [] for s in report["goals"][0]["over_time"])


def test_days_of_entry_are_the_days_of_the_zone_the_report_is_read_in(simulate: Simulate) -> None:
    """Entries just before and after midnight in Paris (UTC+1) and Kolkata (UTC+5:30), and a
    conversion of each: each falls on its own day in the zone asked for."""
    sim = simulate(journey(HOLDOUT, goals=GOALS))
    sign_up(sim, "late", at=after("22h50m"))  # 23:50 in Paris, 04:20 the next day in Kolkata
    sign_up(sim, "night", at=after("23h10m"))  # 00:10 on the 6th in Paris
    sign_up(sim, "before", at=after("1d18h20m"))  # 23:50 on the 6th in Kolkata
    sign_up(sim, "kolkata", at=after("1d18h35m"))  # 00:05 on the 7th in Kolkata
    for user in ("late", "night", "before", "kolkata"):
        buy(sim, "2d", user=user)
    model = sim.workspace.journeys["j"]

    def days_of(zone: str) -> dict[str, tuple[int, int]]:
        kept = counters(sim.tallies)
        report = journey_report(model, kept, None, Days(), None, ZoneInfo(zone))
        assert report["timezone"] == zone
        found: dict[str, tuple[int, int]] = {}
        for series in report["goals"][0]["over_time"]:
            for p in series["points"]:
                was = found.get(p["day"], (0, 0))
                found[p["day"]] = (was[0] + p["entries"], was[1] + p["conversions"])
        return {day: n for day, n in found.items() if n != (0, 0)}

    assert days_of("UTC") == {"2026-01-05": (2, 2), "2026-01-06": (2, 2)}
    assert days_of("Europe/Paris") == {"2026-01-05": (1, 1), "2026-01-06": (3, 3)}
    assert days_of("Asia/Kolkata") == {"2026-01-06": (3, 3), "2026-01-07": (1, 1)}
    sixth = Days(date(2026, 1, 6), date(2026, 1, 6))
    in_paris = journey_report(
        model, counters(sim.tallies), None, sixth, None, ZoneInfo("Europe/Paris")
    )
    assert (in_paris["entries"], in_paris["goals"][0]["conversions"]) == (3, 3)
    in_utc = journey_report(model, counters(sim.tallies), None, sixth)
    assert (in_utc["entries"], in_utc["goals"][0]["conversions"]) == (2, 2)
    assert "Day of entry (Europe/Paris)" in conversion_chart(
        "purchased", in_paris["goals"][0]["over_time"], (), "Europe/Paris"
    )


def test_counters_kept_by_utc_day_before_still_count_on_their_day(simulate: Simulate) -> None:
    model = simulate(journey(HOLDOUT, goals=GOALS)).workspace.journeys["j"]
    kept = [
        Counter(1, "", "", "entered", 3, 0.0),
        Counter(1, "", "", "day:2026-01-05:entered", 3, 0.0),
    ]
    report = journey_report(model, kept, 1, Days(date(2026, 1, 5), date(2026, 1, 5)))
    assert report["entries"] == 3
