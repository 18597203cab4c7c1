"""Imports over HTTP: each upload becomes a job that the server runs in the background.

``POST /v1/import`` spools the body to a temporary file as it arrives (never whole in
memory), then :meth:`ImportJobs.start` makes a job and runs it as ``journeyman import``
runs a file (:class:`~journeyman.runtime.importing.Importer`), through the server's own
processor: the single writer, so an import and live events never overwrite each other.

A job is kept in the store's settings (``import-job:ID``, the ids of the latest in
``import-jobs``), saved as it moves on; its live counts are in memory. Its status is
``running``, then ``done``, ``failed`` (with the error) or ``interrupted``: a job still
running when the server stops, or found running when it starts again (it was killed), is
marked interrupted. Its upload is gone then; posting the file again finishes it, since the
rows imported already are skipped by their messageIds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from journeyman.errors import JourneymanError
from journeyman.runtime.importing import Counts, Importer, Kind, submitter
from journeyman.runtime.processor import Processor
from journeyman.storage.base import Store

__all__ = ["KEPT_JOBS", "REJECTS_SHOWN", "ImportJob", "ImportJobs", "spool_file"]

log = logging.getLogger("journeyman.imports")

KEPT_JOBS = 50  # the latest jobs listed (older ones are forgotten)
REJECTS_SHOWN = 100  # rejected rows a job keeps, with their reasons
SAVE_SECONDS = 1.0  # a running job's counts are saved this often
_LIST = "import-jobs"
INTERRUPTED = (
    "the server stopped before the job was done; post the file again: the rows imported "
    "already are skipped"
)


@dataclass(slots=True)
class ImportJob:
    """One import over HTTP, as ``GET /v1/imports/{id}`` shows it."""

    id: str
    kind: str
    format: str
    trigger: bool
    bytes: int  # of the upload, inflated
    status: str = "running"  # then done, failed or interrupted
    read: int = 0
    imported: int = 0
    duplicate: int = 0
    rejected: int = 0
    error: str | None = None
    created_at: str = ""
    finished_at: str | None = None
    rejects: list[dict[str, Any]] = field(default_factory=list)  # the first REJECTS_SHOWN

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportJobs:
    """The server's import jobs: started, followed, and marked when they cannot finish."""

    def __init__(self, store: Store, processor: Callable[[], Processor]) -> None:
        self.store = store
        self.processor = processor
        self._live: dict[str, ImportJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._saving = asyncio.Lock()
        self._saved: dict[str, float] = {}  # job -> when it was last saved (monotonic)
        self._saves: set[asyncio.Future[None]] = set()

    async def recover(self) -> None:
        """At start: a job that was running when the server last stopped is interrupted."""
        for job in await self.recent():
            if job.status == "running":
                job.status, job.error = "interrupted", INTERRUPTED
                job.finished_at = _now()
                await self._save(job)

    def start(
        self, kind: Kind, fmt: str, upload: Path, size: int, *, trigger: bool, key: str | None
    ) -> ImportJob:
        """Make a job of an upload spooled to ``upload`` and run it; the file is deleted
        when the job ends."""
        job = ImportJob(secrets.token_hex(8), kind, fmt, trigger, size, created_at=_now())
        self._live[job.id] = job
        task = asyncio.create_task(self._run(job, upload, key), name=f"import {job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job

    async def get(self, job_id: str) -> ImportJob | None:
        live = self._live.get(job_id)
        if live is not None:
            return live
        text = await self.store.get_setting(f"import-job:{job_id}")
        return _job(text) if text is not None else None

    async def recent(self, limit: int = KEPT_JOBS) -> list[ImportJob]:
        """The latest jobs, newest first."""
        found = []
        for job_id in (await self._ids())[:limit]:
            job = await self.get(job_id)
            if job is not None:
                found.append(job)
        return found

    async def stop(self) -> None:
        """The server stops: jobs still running are interrupted (see the module)."""
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, job: ImportJob, upload: Path, key: str | None) -> None:
        rejects = upload.with_name(upload.name + ".rejects")
        processor = self.processor()
        importer = Importer(
            job.kind,  # type: ignore[arg-type]
            upload,
            job.format,
            workspace=lambda: processor.workspace,
            submit=submitter(processor, trigger=job.trigger),
            now=processor.now,
            rejects=rejects,
            key=key,
            progress=lambda counts, _: self._moved(job, counts),
            trigger=job.trigger,
        )
        try:
            await self._save(job, new=True)
            await importer.run()
            job.status = "done"
        except asyncio.CancelledError:
            job.status, job.error = "interrupted", INTERRUPTED
        except JourneymanError as error:
            job.status, job.error = "failed", str(error)
        except Exception as error:  # a fault in journeyman: the job shows it, the log too
            log.exception("import %s failed", job.id)
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.rejects = _first_rejects(rejects)
            job.finished_at = _now()
            await asyncio.shield(self._finish(job, upload, rejects))

    async def _finish(self, job: ImportJob, upload: Path, rejects: Path) -> None:
        try:
            await self._save(job)
        finally:
            self._live.pop(job.id, None)
            self._saved.pop(job.id, None)
            upload.unlink(missing_ok=True)
            rejects.unlink(missing_ok=True)

    def _moved(self, job: ImportJob, counts: Counts) -> None:
        job.read, job.imported = counts.read, counts.imported
        job.duplicate, job.rejected = counts.duplicate, counts.rejected
        now = time.monotonic()
        if now - self._saved.get(job.id, 0.0) >= SAVE_SECONDS and job.id in self._live:
            self._saved[job.id] = now  # kept as it moves on, for a restart to show
            saving = asyncio.ensure_future(self._save(job))
            self._saves.add(saving)
            saving.add_done_callback(self._saves.discard)

    async def _ids(self) -> list[str]:
        text = await self.store.get_setting(_LIST)
        try:
            ids = json.loads(text) if text else []
        except ValueError:
            return []
        return [i for i in ids if isinstance(i, str)]

    async def _save(self, job: ImportJob, *, new: bool = False) -> None:
        async with self._saving:
            await self.store.set_setting(f"import-job:{job.id}", json.dumps(job.as_dict()))
            if new:
                ids = [job.id, *(await self._ids())]
                await self.store.set_setting(_LIST, json.dumps(ids[:KEPT_JOBS]))


def spool_file() -> tuple[Path, Any]:
    """A new temporary file for an upload, open for writing."""
    handle = tempfile.NamedTemporaryFile(prefix="journeyman-import-", delete=False)  # noqa: SIM115
    return Path(handle.name), handle


def _first_rejects(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with contextlib.suppress(OSError), path.open("rb") as file:
        for line in file:
            if len(found) >= REJECTS_SHOWN:
                break
            found.append(json.loads(line))
    return found


def _job(text: str) -> ImportJob | None:
    try:
        return ImportJob(**json.loads(text))
    except (ValueError, TypeError):
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
