"""One segment over HTTP (admin key): ``GET /v1/segments/{name}`` and
``POST /v1/segments/{name}/backfill``.

``GET`` answers the segment's definition and size, its size over the last 30 days
(``sizes``: ``since``, ``until``, ``start``, the size at ``since``, and ``points``, the size
at the end of each UTC hour that had an entry or an exit, with how many entered and left
then), and its latest backfill (``backfill``: ``done`` of ``total`` profiles, ``percent``,
``rate`` in profiles a second, ``eta`` in seconds, ``state``: ``running``, ``done`` or
``superseded``), with the few before it (``backfills``).

``POST .../backfill`` starts a backfill of the segment again, over every profile (202, the
backfill as stored): for instance after old events were imported. A list segment has no
condition to compute: 409.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.domain.segments import digest
from journeyman.runtime.service import Runtime
from journeyman.web.segments_view import segment_detail
from journeyman.wire import Problem, json_response

__all__ = ["segment_routes"]

Handler = Callable[[Request], Awaitable[Response]]


def segment_routes(runtime: Runtime, guard: Callable[[Handler], Handler]) -> list[Route]:
    """The routes, each behind ``guard`` (the admin key)."""

    async def show(request: Request) -> Response:
        name = request.path_params["name"]
        detail = await segment_detail(runtime, name)
        if detail is None:
            raise Problem(404, "name", "exists", f"no segment {name[:200]!r}")
        return json_response(detail)

    async def backfill(request: Request) -> Response:
        name = request.path_params["name"]
        segment = runtime.workspace.segments.get(name)
        if segment is None:
            raise Problem(404, "name", "exists", f"no segment {name[:200]!r}")
        if segment.listed:
            raise Problem(
                409, "name", "computed", f"segment {name!r} is a list: it has no `when` to backfill"
            )
        started = await runtime.backfills.start(name, digest(segment), again=True)
        if started is None:
            raise Problem(409, "name", "store", "this store keeps no backfills (memory)")
        return json_response(started.progress(), 202)

    return [
        Route("/v1/segments/{name}", guard(show), methods=["GET"]),
        Route("/v1/segments/{name}/backfill", guard(backfill), methods=["POST"]),
    ]
