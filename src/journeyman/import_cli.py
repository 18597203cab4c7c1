"""``journeyman import profiles|events FILE``: bulk loads straight into the database."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import click

from journeyman.errors import JourneymanError

__all__ = ["import_group"]


@click.group("import")
def import_group() -> None:
    """Load profiles or events from a CSV or NDJSON file into the database, or a list
    segment's members into a running server.

    Every row is checked as ingest checks a call (ids, limits, the event definition's
    schema); rejected rows go, with their reasons, to the rejects file and the import goes
    on. Imported events land in their profiles' history and start, resume and end no
    journey unless --trigger is given. An interrupted import resumes where it stopped when
    run again, and a second run imports nothing twice (see docs/cli.md).
    """


def _options(command: Any) -> Any:
    options = [
        click.argument(
            "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE"
        ),
        click.option(
            "--db",
            metavar="URL",
            default=None,
            help="The storage URL the server uses (default as for serve).",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["csv", "ndjson"]),
            default=None,
            help="The file's format. Default: from its name (.csv, .ndjson, .jsonl, .json).",
        ),
        click.option(
            "--workspace",
            "workspace_dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            default=None,
            help="Check rows against this folder's event definitions instead of the "
            "workspace published in the database.",
        ),
        click.option(
            "--rejects",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Where rejected rows go, one JSON line each with its reasons. "
            "Default: FILE.rejects.ndjson.",
        ),
        click.option(
            "--restart",
            is_flag=True,
            help="Read the file from the top even if an earlier run stopped part way "
            "(rows already imported are still skipped).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@import_group.command("events")
@_options
@click.option(
    "--key",
    metavar="COLUMN",
    default=None,
    help="The column (or NDJSON field, or property) whose value is the messageId of rows "
    "without one. Default: a messageId made from the row's content.",
)
@click.option(
    "--trigger",
    is_flag=True,
    help="Run the events through journeys as ingest does (entries, waits, exits).",
)
def events(
    file: Path,
    db: str | None,
    fmt: str | None,
    workspace_dir: Path | None,
    rejects: Path | None,
    restart: bool,
    key: str | None,
    trigger: bool,
) -> None:
    """Import events (track, page, screen, identify or alias calls) from FILE.

    NDJSON: one Segment call a line, `type` track when absent. CSV: a header row with the
    columns type, event, userId, anonymousId, messageId and timestamp; every other column
    is a property (`properties.` before its name is dropped).
    """
    _import("events", file, db, fmt, workspace_dir, rejects, restart, key, trigger)


@import_group.command("profiles")
@_options
def profiles(
    file: Path,
    db: str | None,
    fmt: str | None,
    workspace_dir: Path | None,
    rejects: Path | None,
    restart: bool,
) -> None:
    """Import profiles from FILE: each row sets the traits it has (an identify).

    NDJSON: `{"userId": ..., "traits": {...}}` a line. CSV: a userId (or anonymousId)
    column; every other column is a trait (`traits.` before its name is dropped). Traits a
    row does not have are left as they are; a null value in NDJSON removes one.
    """
    _import("profiles", file, db, fmt, workspace_dir, rejects, restart, None, False)


def _import(
    kind: str,
    file: Path,
    db: str | None,
    fmt: str | None,
    workspace_dir: Path | None,
    rejects: Path | None,
    restart: bool,
    key: str | None,
    trigger: bool,
) -> None:
    from journeyman.cli import _outside
    from journeyman.runtime.importing import format_of
    from journeyman.server import DEFAULT_STORAGE

    url = db or os.environ.get("JOURNEYMAN_DB") or DEFAULT_STORAGE
    _outside(url, "import through the server: POST /v1/import")
    try:
        found = format_of(file, fmt)
    except JourneymanError as error:
        raise click.UsageError(str(error)) from None
    rejects = rejects or file.with_name(file.name + ".rejects.ndjson")
    began = time.perf_counter()
    try:
        counts, resumed = asyncio.run(
            _run(kind, file, found, url, workspace_dir, rejects, restart, key, trigger)
        )
    except JourneymanError as error:
        raise click.ClickException(str(error)) from None
    seconds = time.perf_counter() - began
    if resumed:
        click.echo(f"resumed after row {resumed:,} of {file}")
    rate = counts.read / seconds if seconds > 0 else 0.0
    click.echo(
        f"{kind}: {counts.read:,} rows read, {counts.imported:,} imported, "
        f"{counts.duplicate:,} already there, {counts.rejected:,} rejected "
        f"in {seconds:.1f}s ({rate:,.0f} rows/s)"
    )
    if counts.rejected:
        click.echo(f"rejected rows and their reasons: {rejects}")


async def _run(
    kind: str,
    file: Path,
    fmt: str,
    url: str,
    workspace_dir: Path | None,
    rejects: Path,
    restart: bool,
    key: str | None,
    trigger: bool,
) -> tuple[Any, int]:
    from journeyman.runtime.importing import BATCH, IN_FLIGHT, Checkpoint, Importer, submitter
    from journeyman.runtime.processor import Processor
    from journeyman.runtime.publish import Versions
    from journeyman.storage import open_store

    store = open_store(url)
    await store.open()
    try:
        workspace, load = await _workspace(store, workspace_dir)
        processor = Processor(store, workspace, max_batch=BATCH, max_queue=BATCH * IN_FLIGHT * 2)
        if trigger:
            versions = Versions()
            versions.keep(workspace.journeys)
            await versions.load(store)
            processor.use(workspace, versions)
            processor.obey(await store.journey_states())
        loop = asyncio.create_task(processor.run())

        with _bar(file, kind) as progress, _readers(file, load) as pool:
            importer = Importer(
                kind,  # type: ignore[arg-type]
                file,
                fmt,
                workspace=lambda: workspace,
                submit=submitter(processor, trigger=trigger),
                now=processor.now,
                rejects=rejects,
                key=key,
                store=store,
                checkpoint_key=Checkpoint.key(kind, file),
                restart=restart,
                progress=progress,
                trigger=trigger,
                pool=pool,
            )
            try:
                counts = await importer.run()
            finally:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
                await processor.drain()
        return counts, importer.resumed_at
    finally:
        await store.close()


async def _workspace(store: Any, folder: Path | None) -> tuple[Any, Callable[[], Any]]:
    """The workspace rows are checked against (the folder's, else the published one), and
    how another process loads it."""
    if folder is not None:
        load = functools.partial(_folder, folder)
    else:
        published = await store.published_workspace()
        if published is None:
            raise click.ClickException(
                "no workspace was published to this database: start `journeyman serve` on "
                "it once, or give --workspace FOLDER"
            )
        load = functools.partial(_published, published)
    try:
        return load(), load
    except JourneymanError as error:
        raise click.ClickException(str(error)) from None


def _folder(folder: Path) -> Any:
    from journeyman.workspace import load_workspace

    loaded = load_workspace(folder, os.environ)
    if loaded.workspace is None:
        problems = "; ".join(str(p) for p in loaded.errors[:3])
        raise JourneymanError(f"{folder} has errors: {problems}")
    return loaded.workspace


def _published(published: Any) -> Any:
    from journeyman.runtime.following import load_published

    return load_published(published, os.environ)


# A file this large is read by other processes too (each loads the workspace once, which
# a smaller file does not repay).
POOL_FROM = 4 * 1024 * 1024


@contextlib.contextmanager
def _readers(file: Path, load: Callable[[], Any]) -> Iterator[Executor | None]:
    """Processes that read rows while this one commits: one for each core (reading a
    row costs more than the rest of its import, and this process often waits)."""
    from journeyman.runtime.importing import start_reader

    processes = os.cpu_count() or 1
    if processes < 2 or file.stat().st_size < POOL_FROM:
        yield None
        return
    context = multiprocessing.get_context("spawn")  # nothing of this process's state
    with ProcessPoolExecutor(processes, context, start_reader, (load,)) as pool:
        yield pool


@contextlib.contextmanager
def _bar(file: Path, kind: str) -> Iterator[Any]:
    """A progress bar on stderr (on a terminal), and the callback that moves it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    total = file.stat().st_size
    with Progress(
        TextColumn(f"importing {kind}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("import", total=total, rows="")

        def moved(counts: Any, offset: int) -> None:
            rows = f"{counts.read:,} rows, {counts.rejected:,} rejected"
            progress.update(task, completed=offset, rows=rows)

        yield moved
