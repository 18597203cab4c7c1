"""Operators decide an experiment by hand (admin key).

- ``POST /v1/journeys/{name}/experiments/{step}/winner`` ``{"variant": "b", "by": "..."}``:
  every new profile at the step gets ``variant`` from now on.
- ``POST /v1/journeys/{name}/experiments/{step}/stop`` ``{"variant": "a", "by": "..."}``:
  the experiment stops; every new profile gets ``variant``, else the first variant.

Either replaces any decision before it (the policy's too), is stored with the variants'
data of the moment (see :mod:`journeyman.runtime.experiments`), and answers it. A bad body
changes nothing and gets a 4xx naming the field and the rule.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.consent_admin import changed_by, known_fields, object_body
from journeyman.domain import model as m
from journeyman.domain.experiments import How
from journeyman.runtime.service import Runtime
from journeyman.wire import Problem, json_response

__all__ = ["experiment_routes", "find_experiment", "variant_named"]

log = logging.getLogger("journeyman.api")

Handler = Callable[[Request], Awaitable[Response]]
_PATH = "/v1/journeys/{name}/experiments/{step}"


def experiment_routes(
    runtime: Runtime, guard: Callable[[Handler], Handler], unavailable: Callable[[Any], bool]
) -> list[Route]:
    async def winner(request: Request) -> Response:
        return await _decide(runtime, unavailable, request, "chosen")

    async def stop(request: Request) -> Response:
        return await _decide(runtime, unavailable, request, "stopped")

    return [
        Route(f"{_PATH}/winner", guard(winner), methods=["POST"]),
        Route(f"{_PATH}/stop", guard(stop), methods=["POST"]),
    ]


async def _decide(
    runtime: Runtime, unavailable: Callable[[Any], bool], request: Request, how: How
) -> Response:
    journey, step = find_experiment(
        runtime, request.path_params["name"], request.path_params["step"]
    )
    body = await object_body(request)
    known_fields(body, ("variant", "by"))
    by = changed_by(body.get("by"))
    variant = variant_named(step, body.get("variant"), required=how == "chosen")
    try:
        decision = await runtime.decide_experiment(journey, step, variant, how, by)
    except Exception as error:
        if not unavailable(error):
            raise
        log.warning("an experiment's decision could not be stored: %r", error)
        raise Problem(
            503,
            "store",
            "unavailable",
            "the decision could not be stored; retry",
            {"Retry-After": "1"},
        ) from None
    return json_response(decision.as_json())


def find_experiment(runtime: Runtime, name: str, step_id: str) -> tuple[m.Journey, m.Experiment]:
    """The journey ``name`` and its experiment step ``step_id``, or a 404 naming which is
    not (``name`` or ``step``)."""
    journey = runtime.workspace.journeys.get(name)
    if journey is None:
        raise Problem(404, "name", "exists", f"no journey named {name!r}")
    found = journey.steps.get(step_id)
    if not isinstance(found, m.Experiment):
        steps = [s.id for s in journey.steps.values() if isinstance(s, m.Experiment)]
        known = ", ".join(steps) or "none"
        message = f"{name} has no experiment step {step_id!r}; its experiments: {known}"
        raise Problem(404, "step", "exists", message)
    return journey, found


def variant_named(step: m.Experiment, value: Any, required: bool) -> str:
    """``value`` if it names a variant of ``step`` (absent and not ``required``: the
    first variant), else a 400 naming ``variant``."""
    names = [v.name for v in step.variants]
    if value is None and not required:
        return names[0]
    if value is None:
        raise Problem(400, "variant", "required", "'variant' must name the winning variant")
    if not isinstance(value, str) or value not in names:
        shown = repr(value) if isinstance(value, str) else "that"
        message = f"'variant' must be one of {', '.join(names)}, not {shown}"
        raise Problem(400, "variant", "exists", message)
    return value
