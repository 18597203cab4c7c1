"""The journey `make bench-peers` measures must be the one it claims to measure.

The peers' benchmark (``benchmarks/peers/``) compares journeyman with the same journey
built on other engines; a broken workspace would make it measure something else.
"""

from pathlib import Path

from journeyman import load_workspace, run_tests

WORKSPACE = Path(__file__).parents[2] / "benchmarks" / "peers" / "workspace"


def test_the_peers_workspace_is_sound_without_warnings() -> None:
    loaded = load_workspace(WORKSPACE)
    assert [str(p) for p in loaded.problems] == []
    assert loaded.workspace is not None
    assert set(loaded.workspace.journeys) == {"welcome", "welcome_soon"}


def test_the_peers_journey_behaves_as_its_tests_say() -> None:
    workspace = load_workspace(WORKSPACE).workspace
    assert workspace is not None
    results = run_tests(workspace)
    assert len(results) == 4
    assert [(r.test.name, r.failures) for r in results if not r.passed] == []
