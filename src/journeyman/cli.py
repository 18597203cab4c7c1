"""The ``journeyman`` command."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from journeyman import __version__
from journeyman.domain.graph import to_mermaid
from journeyman.domain.model import Workspace
from journeyman.errors import JourneymanError
from journeyman.journey_tests import format_trace, run_test
from journeyman.workspace import Loaded, load_workspace

__all__ = ["main"]

_WORKSPACE = click.argument(
    "workspace", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="WORKSPACE"
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="journeyman")
def main() -> None:
    """journeyman: customer journeys as code.

    A workspace is a folder of YAML files (events, templates, actions, journeys, rules and
    tests). Check it with `journeyman validate`, run its journey tests on a virtual clock
    with `journeyman test`, and draw a journey with `journeyman graph`.
    """


def _load(folder: Path) -> Loaded:
    try:
        return load_workspace(folder)
    except JourneymanError as error:
        raise click.ClickException(str(error)) from None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _print_problems(loaded: Loaded) -> None:
    for problem in loaded.problems:
        click.echo(str(problem), err=problem.is_error)


def _sound(loaded: Loaded) -> Workspace:
    """The workspace, or exit 1 after printing its errors."""
    _print_problems(loaded)
    if loaded.workspace is None:
        click.echo(f"{_count(len(loaded.errors), 'error')}: the workspace is not sound", err=True)
        sys.exit(1)
    return loaded.workspace


@main.command()
@_WORKSPACE
def validate(workspace: Path) -> None:
    """Check every file of WORKSPACE; print one line per problem.

    Exits 0 when the workspace is sound (warnings are printed but allowed), 1 when it has
    errors. Each problem reads `file:line: kind name: message`.
    """
    loaded = _load(workspace)
    ws = _sound(loaded)
    warnings = len(loaded.warnings)
    counts = ", ".join(
        _count(len(items), label)
        for label, items in (
            ("event", ws.events),
            ("template", ws.templates),
            ("action", ws.actions),
            ("journey", ws.journeys),
            ("test", ws.tests),
        )
    )
    note = f", {_count(warnings, 'warning')}" if warnings else ""
    click.echo(f"{workspace}: sound ({counts}{note})")


@main.command("test")
@_WORKSPACE
@click.option("--trace", is_flag=True, help="Print each profile's timeline for every test.")
@click.option(
    "-k",
    "--match",
    "match",
    metavar="TEXT",
    help="Run only the tests whose name contains TEXT.",
)
def test_command(workspace: Path, trace: bool, match: str | None) -> None:
    """Run the journey tests of WORKSPACE on a virtual clock.

    Every `kind: test` document replays its events and checks what it expects. Prints one
    line per test and exits 1 if any fails.
    """
    ws = _sound(_load(workspace))
    tests = [t for t in ws.tests if match is None or match in t.name]
    if not tests:
        raise click.ClickException(
            "no journey tests found" + (f" matching {match!r}" if match else "")
        )
    failed = 0
    started = time.perf_counter()
    for test in tests:
        began = time.perf_counter()
        result = run_test(ws, test)
        took = (time.perf_counter() - began) * 1000
        mark = click.style("PASS", fg="green") if result.passed else click.style("FAIL", fg="red")
        click.echo(f"{mark} {test.name} ({test.origin.file}:{test.origin.line}, {took:.1f} ms)")
        for failure in result.failures:
            click.echo(f"     {failure}")
        if trace:
            click.echo("\n".join(format_trace(result.simulator)))
        failed += not result.passed
    seconds = time.perf_counter() - started
    click.echo(f"{len(tests) - failed} passed, {failed} failed in {seconds:.2f}s")
    if failed:
        if not trace:
            click.echo("Run again with --trace to see each profile's timeline.")
        sys.exit(1)


@main.command()
@_WORKSPACE
@click.argument("journey")
def graph(workspace: Path, journey: str) -> None:
    """Print JOURNEY of WORKSPACE as a Mermaid flowchart.

    Paste the output into a ```mermaid block of any GitHub markdown file to see it drawn.
    """
    ws = _sound(_load(workspace))
    found = ws.journeys.get(journey)
    if found is None:
        names = ", ".join(sorted(ws.journeys)) or "none"
        raise click.ClickException(f"no journey named {journey!r} (journeys: {names})")
    click.echo(to_mermaid(found), nl=False)
