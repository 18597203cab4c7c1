"""Imports over HTTP (admin key): ``POST /v1/import``, ``GET /v1/imports`` and
``GET /v1/imports/{id}``.

The body (NDJSON, or CSV with ``format=csv``; gzip or deflate with a Content-Encoding, as
ingest takes) is written to a temporary file as it arrives and inflated on the way, never
held whole in memory; once it is all there, the answer is 202 with the job's id, and the
job runs in the background (see :mod:`journeyman.runtime.import_jobs`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.api import _json, _params
from journeyman.domain.ingest import NAME_LIMIT
from journeyman.runtime.import_jobs import spool_file
from journeyman.runtime.importing import FORMATS, KINDS
from journeyman.runtime.service import Runtime
from journeyman.wire import Disconnected, Problem, inflate_chunk, inflater

__all__ = ["IMPORT_LIMIT", "import_routes"]

IMPORT_LIMIT = 8 * 1024**3  # bytes of an upload, inflated
_TOO_LARGE = f"an import is at most {IMPORT_LIMIT:,} bytes"
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def import_routes(runtime: Runtime, guard: Any) -> list[Route]:
    imports = _Imports(runtime)
    return [
        Route("/v1/import", guard(imports.start), methods=["POST"]),
        Route("/v1/imports", guard(imports.jobs), methods=["GET"]),
        Route("/v1/imports/{id}", guard(imports.job), methods=["GET"]),
    ]


class _Imports:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def start(self, request: Request) -> Response:
        given = _params(request, "kind", "format", "trigger", "key")
        kind = _choice(given, "kind", KINDS, None)
        fmt = _choice(given, "format", FORMATS, "ndjson")
        trigger = _BOOLEANS.get(given.get("trigger", "false").lower())
        if trigger is None:
            raise Problem(400, "trigger", "type", "'trigger' must be true or false")
        key = given.get("key")
        if key is not None and not 0 < len(key) <= NAME_LIMIT:
            message = f"'key' names a column: 1 to {NAME_LIMIT} characters"
            raise Problem(400, "key", "length", message)
        if getattr(self.runtime, "bus", None) is not None:
            message = (
                "imports run in a server without --bus; import into the database with "
                "`journeyman import --db`"
            )
            raise Problem(409, "server", "bus", message)
        encoding = request.headers.get("content-encoding", "")
        path, size = await _spool(request, encoding)
        if size == 0:
            path.unlink(missing_ok=True)
            raise Problem(400, "body", "required", "the body is empty: send the rows to import")
        job = self.runtime.imports.start(
            kind,  # type: ignore[arg-type]
            fmt,
            path,
            size,
            trigger=trigger,
            key=key,
        )
        where = f"/v1/imports/{job.id}"
        return _json({**job.as_dict(), "url": where}, 202, {"Location": where})

    async def jobs(self, request: Request) -> Response:
        return _json({"imports": [job.as_dict() for job in await self.runtime.imports.recent()]})

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["id"]
        job = await self.runtime.imports.get(job_id)
        if job is None:
            raise Problem(404, "id", "exists", f"no import {job_id[:80]!r}")
        return _json(job.as_dict())


def _choice(given: dict[str, str], name: str, allowed: tuple[str, ...], default: str | None) -> str:
    value = given.get(name, default)
    if value is None:
        raise Problem(400, name, "required", f"'{name}' is required: {' or '.join(allowed)}")
    if value not in allowed:
        raise Problem(400, name, "enum", f"'{name}' must be {' or '.join(allowed)}")
    return value


async def _spool(request: Request, encoding: str) -> tuple[Any, int]:
    """Write the body to a temporary file as it arrives (inflated, when it is sent so);
    the file and how many bytes it holds. Nothing is left behind if it fails."""
    inflate = inflater(encoding)
    path, file = spool_file()
    size, more = 0, True
    try:
        with file:
            while more:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise Disconnected
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                if inflate is not None:
                    chunk = inflate_chunk(inflate, chunk, IMPORT_LIMIT - size, last=not more)
                size += len(chunk)
                if size > IMPORT_LIMIT:
                    raise Problem(413, "body", "size", _TOO_LARGE)
                file.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size
