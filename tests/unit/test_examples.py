"""The example workspace is what new users copy: it must stay sound and its tests green."""

from pathlib import Path

from journeyman import load_workspace, run_tests

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_examples_are_sound_without_warnings() -> None:
    loaded = load_workspace(EXAMPLES)
    assert [str(p) for p in loaded.problems] == []
    assert loaded.workspace is not None
    assert set(loaded.workspace.journeys) == {"welcome", "abandoned_cart", "reengagement"}


def test_every_example_journey_test_passes() -> None:
    workspace = load_workspace(EXAMPLES).workspace
    assert workspace is not None
    results = run_tests(workspace)
    assert len(results) >= 9
    assert [(r.test.name, r.failures) for r in results if not r.passed] == []


def test_every_example_journey_is_exercised_by_a_test() -> None:
    workspace = load_workspace(EXAMPLES).workspace
    assert workspace is not None
    entered = {
        record.journey
        for result in run_tests(workspace)
        for record in result.simulator.records
        if record.outcome == "entered"
    }
    assert entered == set(workspace.journeys)
