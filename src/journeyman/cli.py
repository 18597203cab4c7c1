"""The ``journeyman`` command."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

import click

from journeyman import __version__, segment_import
from journeyman.domain.graph import to_mermaid
from journeyman.domain.model import TestCase, Workspace
from journeyman.errors import JourneymanError
from journeyman.journey_tests import TestResult, format_trace, run_test
from journeyman.workspace import Loaded, load_workspace

__all__ = ["main"]

_WORKSPACE = click.argument(
    "workspace", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="WORKSPACE"
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="journeyman")
def main() -> None:
    """journeyman: customer journeys as code.

    A workspace is a folder of YAML files (events, templates, actions, journeys, rules,
    channels and tests). Check it with `journeyman validate`, run its journey tests on a
    virtual clock with `journeyman test`, and draw a journey with `journeyman graph`.

    Run it with `journeyman serve`, publish changes to a running server with `journeyman
    publish`, and ask why a person got, or did not get, a message with `journeyman trace`.
    Bring a database up to date, or move SQLite to PostgreSQL, with `journeyman migrate`.
    """


def _load(folder: Path, env: Mapping[str, str] | None = None) -> Loaded:
    try:
        return load_workspace(folder, env)
    except JourneymanError as error:
        raise click.ClickException(str(error)) from None


def _run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived process (serve, worker) on uvloop where it is installed (it is,
    with uvicorn[standard]); journeyman's errors and the system's become one clear line."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop builds for every platform we test
        run = asyncio.run
    else:
        run = uvloop.run
    try:
        run(main)
    except JourneymanError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot start: {error}") from None


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
            ("event", [e for e in ws.events.values() if not e.builtin]),
            ("template", ws.templates),
            ("action", ws.actions),
            ("journey", ws.journeys),
            ("test", ws.tests),
        )
    )
    note = f", {_count(warnings, 'warning')}" if warnings else ""
    escaping = sorted(
        name
        for name, template in ws.templates.items()
        if any(part.escapes for part in template.fields.values())
    )
    if escaping:
        click.echo(
            f"escaping: the html of {_count(len(escaping), 'template')} ({', '.join(escaping)}) "
            "escapes the values it outputs; subjects, text and other bodies are sent as written"
        )
    click.echo(f"{workspace}: sound ({counts}{note})")


_TIME_LIMIT = 30.0  # seconds of wall-clock time one journey test may run


class _Seconds(click.ParamType[float]):
    """A positive, finite number of seconds, such as ``30`` or ``2.5``."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if not 0 < seconds < math.inf:
            message = f"must be a positive number of seconds, such as 30 or 2.5, not {value!r}"
            self.fail(message, param, ctx)
        return seconds


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
@click.option(
    "--time-limit",
    type=_Seconds(),
    default=_TIME_LIMIT,
    metavar="SECONDS",
    help=f"Stop and fail a test still running after SECONDS of wall-clock time "
    f"(default {_TIME_LIMIT:g}).",
)
def test_command(workspace: Path, trace: bool, match: str | None, time_limit: float) -> None:
    """Run the journey tests of WORKSPACE on a virtual clock.

    Every `kind: test` document replays its events and checks what it expects. Prints one
    line per test and exits 1 if any fails. A test still running after --time-limit
    seconds (a journey that waits in a loop, a schedule, a far `until`) stops and fails,
    naming what still ran; the other tests run on.
    """
    ws = _sound(_load(workspace))
    tests = [t for t in ws.tests if match is None or match in t.name]
    if not tests:
        raise click.ClickException(
            "no journey tests found" + (f" matching {match!r}" if match else "")
        )
    failed = 0
    stopped: Counter[str] = Counter()
    started = time.perf_counter()
    for test in tests:
        began = time.perf_counter()
        result = run_test(ws, test, time_limit=time_limit)
        _print_result(result, time.perf_counter() - began, trace, time_limit)
        failed += not result.passed
        stopped[result.stopped] += 1
    seconds = time.perf_counter() - started
    limits = [(stopped["time"], "the time limit"), (stopped["trace"], "the trace limit")]
    said = [f"{n} stopped at {limit}" for n, limit in limits if n]
    note = f" ({', '.join(said)})" if said else ""
    click.echo(f"{len(tests) - failed} passed, {failed} failed{note} in {seconds:.2f}s")
    if failed:
        if not trace:
            click.echo("Run again with --trace to see each profile's timeline.")
        sys.exit(1)


def _print_result(result: TestResult, seconds: float, trace: bool, time_limit: float) -> None:
    test = result.test
    mark = click.style("PASS", fg="green") if result.passed else click.style("FAIL", fg="red")
    took = seconds * 1000
    click.echo(f"{mark} {test.name} ({test.origin.file}:{test.origin.line}, {took:.1f} ms)")
    for failure in result.failures:
        click.echo(f"     {failure}")
    if result.stopped:
        click.echo(f"     {_raise_the_limit(test, time_limit, result.stopped)}")
    if trace:
        # A stopped test may have run millions of steps: its latest ones say enough.
        last = 20 if result.stopped else None
        click.echo("\n".join(format_trace(result.simulator, last)))


def _raise_the_limit(test: TestCase, limit: float, stopped: str) -> str:
    """What to do about a test a limit stopped (``stopped``: ``time`` or ``trace``)."""
    clock = "give it a shorter 'until'" if test.until else "give it an 'until' (such as 30d)"
    if stopped == "trace":
        return (
            "a journey that loops makes trace lines without end: to stop the test's clock "
            f"sooner, {clock}"
        )
    return (
        "a journey that waits in a loop, or a schedule, never settles by itself: to stop "
        f"the test's clock, {clock}; if it only needs longer, raise the limit with "
        f"--time-limit SECONDS (now {limit:g})"
    )


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


@main.command()
@click.option(
    "--workspace",
    "workspace_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workspace folder to validate and publish.",
)
@click.option(
    "--db",
    metavar="URL",
    help="Storage URL, such as sqlite:///journeyman.db, or memory:// to keep nothing. "
    "Default: JOURNEYMAN_DB, then the settings document, then sqlite:///journeyman.db.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--catcher",
    "catcher_port",
    type=int,
    default=None,
    is_flag=False,
    flag_value=1025,
    metavar="PORT",
    help="Run the built-in mail catcher (on PORT, default 1025) and send email to it.",
)
@click.option(
    "--bus",
    metavar="URL",
    default=None,
    help="NATS URL, such as nats://127.0.0.1:4222: ingest stores events in JetStream and "
    "`journeyman worker` processes apply them (needs PostgreSQL).",
)
@click.option(
    "--stream",
    default="JOURNEYMAN",
    show_default=True,
    help="With --bus: the JetStream stream's name.",
)
@click.option(
    "--partitions",
    type=click.IntRange(1, 4096),
    default=16,
    show_default=True,
    help="With --bus: how many partitions the stream has (the most workers that can share "
    "the work).",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDRESS",
    help="A reverse proxy (an address or a network such as 10.0.0.0/8) whose "
    "X-Forwarded-For names the client, for the console's login limit; repeat for more. "
    "Default: JOURNEYMAN_TRUSTED_PROXIES, else none.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="An origin (scheme://host[:port]) whose web pages may send events with the client "
    "key; repeat for more. Default: JOURNEYMAN_CORS_ORIGINS (comma-separated), else none.",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="The address customers reach this server at, for links in messages (clicks, "
    "opens, unsubscribe). Default: JOURNEYMAN_PUBLIC_URL, else the address it listens on.",
)
@click.option(
    "--publish",
    "publish_folder",
    is_flag=True,
    help="Publish the folder at start even if a newer version was published through the API "
    "while the folder stayed unchanged (without it, that version runs and the banner says so).",
)
def serve(
    workspace_dir: Path,
    db: str | None,
    host: str,
    port: int,
    catcher_port: int | None,
    bus: str | None,
    stream: str,
    partitions: int,
    trusted_proxies: tuple[str, ...],
    cors_origins: tuple[str, ...],
    public_url: str | None,
    publish_folder: bool,
) -> None:
    """Run journeyman: the HTTP API, the engine, timers and delivery, in one process.

    Validates the workspace first and refuses to start if it has errors. Publishes it if
    it changed since it was last published; a newer version published through the API
    while the folder stayed unchanged runs instead, unless --publish is given.
    State lives in one SQLite file by default. Keys come from JOURNEYMAN_WRITE_KEY,
    JOURNEYMAN_ADMIN_KEY and JOURNEYMAN_CLIENT_KEY (the public key web pages send with);
    without them, keys are made once, stored and printed. Stops
    cleanly on Ctrl-C or SIGTERM. With --bus, this process answers HTTP and
    `journeyman worker` processes do the rest.
    """
    from journeyman.server import ServeOptions, storage_url
    from journeyman.server import serve as run_server

    ws = _sound(_load(workspace_dir, os.environ))
    options = ServeOptions(
        workspace_dir=workspace_dir.resolve(),
        storage=storage_url(db, ws, os.environ),
        host=host,
        port=port,
        catcher_port=catcher_port,
        bus=bus,
        stream=stream,
        partitions=partitions,
        trusted_proxies=trusted_proxies,
        cors_origins=cors_origins,
        public_url=public_url,
        publish=publish_folder,
    )
    _run_fast(run_server(ws, options))


@main.command()
@click.option(
    "--db",
    metavar="URL",
    help="The PostgreSQL URL `serve --bus` uses. Default: JOURNEYMAN_DB.",
)
@click.option("--bus", metavar="URL", required=True, help="The NATS URL `serve --bus` uses.")
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Messages fetched from one partition at a time.",
)
@click.option(
    "--workspace",
    "workspace_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="For development only: run this folder's events, templates, channels and rules "
    "instead of the published ones (journeys still come from the database). Without it, "
    "the worker runs the workspace published last and follows every publish.",
)
def worker(db: str | None, bus: str, batch: int, workspace_dir: Path | None) -> None:
    """Apply events from the bus, fire timers and deliver messages, beside other workers.

    Needs only the database and the bus: runs the workspace `journeyman serve` or
    `journeyman publish` published last, and the next one within a second of its publish,
    without a restart; `${ENV}` references in channels are filled in from this process's
    environment. Owns a fair share of the stream's partitions (given back to the others
    when it stops or dies), applies their events in order and acknowledges each only once
    its outcome is committed. Stops cleanly on Ctrl-C or SIGTERM: the batch in flight is
    finished.
    """
    from journeyman.scaleout.work import WorkerOptions, work
    from journeyman.server import storage_url

    ws = None if workspace_dir is None else _sound(_load(workspace_dir, os.environ))
    url = db or os.environ.get("JOURNEYMAN_DB")
    if ws is not None:
        url = storage_url(db, ws, os.environ)
    if not url:
        raise click.ClickException("a worker needs its database: --db URL or JOURNEYMAN_DB")
    options = WorkerOptions(
        workspace_dir=workspace_dir.resolve() if workspace_dir is not None else None,
        storage=url,
        bus=bus,
        batch=batch,
    )
    _run_fast(work(ws, options))


@main.command()
@click.option(
    "--db",
    metavar="URL",
    default=None,
    help="The storage URL the server uses; caught mail lies beside its file.",
)
@click.option("--full", is_flag=True, help="Print each email's text, not only its subject.")
def mail(db: str | None, full: bool) -> None:
    """List the emails the built-in mail catcher (`serve --catcher`) received."""
    from journeyman.channels.catcher import MailCatcher
    from journeyman.server import DEFAULT_STORAGE, data_dir

    url = db or os.environ.get("JOURNEYMAN_DB") or DEFAULT_STORAGE
    path = data_dir(url) / "caught-mail.jsonl"
    mails = MailCatcher.read(path)
    if not mails:
        click.echo(f"no mail caught yet ({path})")
        return
    for caught in mails:
        when = caught.received.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{when}  {', '.join(caught.to)}  {caught.subject}")
        if full:
            click.echo(textwrap.indent((caught.text or caught.html or "").strip(), "    "))


@main.command()
@click.argument("profile_id", metavar="PROFILE")
@click.option(
    "--db",
    metavar="URL",
    default=None,
    help="The storage URL the server uses (default as for serve).",
)
def trace(profile_id: str, db: str | None) -> None:
    """Print PROFILE's journeys step by step, with the reason for each step.

    Answers "why did this person get, or not get, this message": every instance with
    its timeline (branches taken and why, sends skipped, capped or deferred), the events
    that started nothing and why, and the messages sent.
    """
    from journeyman.server import DEFAULT_STORAGE
    from journeyman.tracing import render_trace

    url = db or os.environ.get("JOURNEYMAN_DB") or DEFAULT_STORAGE
    _outside(url, f"ask the server: GET /v1/profiles/{profile_id}, or its console")
    try:
        lines = asyncio.run(render_trace(url, profile_id))
    except JourneymanError as error:
        raise click.ClickException(str(error)) from None
    if lines is None:
        raise click.ClickException(f"no profile {profile_id!r} in {url}")
    click.echo("\n".join(lines))


@main.command()
@click.option(
    "--db",
    metavar="URL",
    default=None,
    help="The database to migrate (default as for serve), such as postgresql://host/db.",
)
@click.option(
    "--from",
    "source",
    metavar="URL",
    default=None,
    help="Copy everything of this SQLite database (sqlite:///path.db) into --db, which "
    "must be PostgreSQL and hold no deployment yet.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="With --from: delete what the target holds first, instead of refusing.",
)
def migrate(db: str | None, source: str | None, replace: bool) -> None:
    """Bring a database's schema up to date, or move a SQLite deployment to PostgreSQL.

    Applies the schema steps the database lacks (serve does this too, at start) and prints
    each one. With --from, then copies the SQLite database's profiles, identities, events,
    instances (waiting ones keep their wake times), outbox, step log, journey versions and
    settings into it, in one transaction, with progress on stderr. Stop the server on the
    SQLite file first.
    """
    from journeyman.server import DEFAULT_STORAGE

    url = db or os.environ.get("JOURNEYMAN_DB") or DEFAULT_STORAGE
    _outside(url, "it has no schema to migrate, and nothing to move into")
    try:
        if source is None:
            lines = asyncio.run(_migrate(url))
        else:
            lines = asyncio.run(_move(source, url, replace))
    except JourneymanError as error:
        refused = _Refused if error.exit_code == _Refused.exit_code else click.ClickException
        raise refused(str(error)) from None
    click.echo("\n".join(lines))


class _Refused(click.ClickException):
    """A command that cannot do what it was asked, as it was asked: exit code 2."""

    exit_code = 2


def _outside(url: str, instead: str) -> None:
    """Refuse an in-memory store to a command that opens the database in a process of its
    own: that process would see an empty store, not the server's."""
    from journeyman.storage import MEMORY, is_memory

    if is_memory(url):
        raise _Refused(
            f"{MEMORY} lives inside the process that serves it and nothing else can read "
            f"it: {instead}"
        )


async def _migrate(url: str) -> list[str]:
    from journeyman.storage import open_store, shown_url

    store = open_store(url)
    await store.open()
    await store.close()
    shown = shown_url(url)
    lines = [f"{shown}: applied schema step {step}" for step in store.applied]
    return lines or [f"{shown}: the schema is up to date"]


async def _move(source: str, target: str, replace: bool) -> list[str]:
    from journeyman.storage.transfer import transfer

    counts = await transfer(
        source, target, replace=replace, say=lambda line: click.echo(line, err=True)
    )
    moved = ", ".join(f"{count:,} {table}" for table, count in counts.items())
    return [f"moved {source} into the target: {moved}"]


_URL = click.option(
    "--url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The journeyman server to publish to.",
)
_KEY = click.option(
    "--key",
    envvar="JOURNEYMAN_ADMIN_KEY",
    help="The admin key (default: JOURNEYMAN_ADMIN_KEY).",
)


@main.command()
@_WORKSPACE
@_URL
@_KEY
@click.option("--dry-run", is_flag=True, help="Only print the plan; publish nothing.")
def publish(workspace: Path, url: str, key: str | None, dry_run: bool) -> None:
    """Validate WORKSPACE here, then publish it to a running server.

    Publishes the whole workspace as one version: every process (the server and every
    worker) runs it within a second, without a restart. Prints the plan: which journeys
    are new, changed (a new version: running instances finish on the version they
    entered, with its templates) and unchanged, and which templates, channels, event
    definitions, actions, rules and settings are new, changed or removed. Exits 1 if the
    workspace has errors or the server refuses it.
    """
    _publish(workspace, url, key, dry_run)


@main.command()
@_WORKSPACE
@_URL
@_KEY
def plan(workspace: Path, url: str, key: str | None) -> None:
    """Print what publishing WORKSPACE to a running server would change; change nothing.

    The same as `journeyman publish --dry-run`: journeys new, changed (with their next
    version) and unchanged, and every other document that is new, changed or removed.
    """
    _publish(workspace, url, key, dry_run=True)


def _publish(workspace: Path, url: str, key: str | None, dry_run: bool) -> None:
    import httpx

    from journeyman.runtime.publish import Plan
    from journeyman.workspace import workspace_files

    _sound(_load(workspace))
    if not key:
        raise click.ClickException("an admin key is needed: --key or JOURNEYMAN_ADMIN_KEY")
    files = {
        path.relative_to(workspace).as_posix(): path.read_text(encoding="utf-8")
        for path in workspace_files(workspace)
    }
    try:
        answer = httpx.put(
            f"{url.rstrip('/')}/v1/workspace",
            params={"dry_run": "true"} if dry_run else None,
            json={"files": files},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
    except httpx.HTTPError as error:
        raise click.ClickException(f"cannot reach {url}: {error}") from None
    body = (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if answer.status_code != 200:
        for problem in body.get("problems", []):
            click.echo(problem["message"], err=True)
        reason = body.get("error", {}).get("message", "the workspace has errors")
        raise click.ClickException(f"{url} answered {answer.status_code}: {reason}")
    plan = Plan(**body["plan"])
    verb = "would publish" if dry_run else "published"
    version = f" as workspace version {plan.workspace}" if plan.workspace else ""
    click.echo(f"{verb} {workspace} to {url}{version}:")
    click.echo("\n".join(plan.lines()))


def _add_import() -> None:
    from journeyman.import_cli import import_group
    from journeyman.segment_cli import segments_group

    import_group.add_command(segment_import.segment)
    main.add_command(import_group)
    main.add_command(segments_group)


_add_import()
