"""Scheduled runs over HTTP (admin key): each run's progress in ``GET /v1/journeys/{name}``
(``runs``), and ``POST /v1/journeys/{name}/runs/{id}/cancel``.

A run shows ``entered`` of ``total`` (the audience when it started), its ``rate`` (profiles a
second, as set), ``eta`` (seconds left at that rate; None once it is over) and ``state``:
``running``, ``done`` or ``cancelled``. A cancel stops a running run after the page in
flight (the members entered stay entered); a run that is over is answered as it is, 409.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.runtime.service import Runtime
from journeyman.storage.runs import Run, RunStore
from journeyman.wire import Problem, json_response

__all__ = ["RUNS_SHOWN", "run_routes", "run_view", "runs_of"]

RUNS_SHOWN = 20  # the latest runs a journey shows

Handler = Callable[[Request], Awaitable[Response]]


def run_view(run: Run) -> dict[str, Any]:
    view = run.as_dict()
    left = max(0, run.total - run.entered)
    view["eta"] = round(left / run.rate, 1) if run.state == "running" else None
    return view


async def runs_of(runtime: Runtime, journey: str) -> list[dict[str, Any]]:
    store = runtime.store
    if not isinstance(store, RunStore):
        return []
    return [run_view(run) for run in await store.runs_of(journey, RUNS_SHOWN)]


def run_routes(runtime: Runtime, guard: Callable[[Handler], Handler]) -> list[Route]:
    async def cancel(request: Request) -> Response:
        name, run_id = request.path_params["name"], request.path_params["id"]
        store = runtime.store
        found, changed = None, False
        if isinstance(store, RunStore):
            found, changed = await store.cancel_run(name, run_id, runtime.clock())
        if found is None:
            raise Problem(
                404, "id", "exists", f"journey {name[:200]!r} has no run {run_id[:200]!r}"
            )
        if not changed:
            raise Problem(409, "id", "state", f"run {run_id!r} is {found.state}, not running")
        return json_response(run_view(found), 200)

    return [Route("/v1/journeys/{name}/runs/{id}/cancel", guard(cancel), methods=["POST"])]
