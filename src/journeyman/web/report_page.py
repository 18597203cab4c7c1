"""The console's Report tab of a journey: ``/journeys/{name}/report``, with its charts
(:mod:`journeyman.web.report_charts`), a plain GET form for the version and the days of
entry, and ``/journeys/{name}/report.csv``, the same report as a download. Asked for JSON
(``Accept: application/json``), the page answers the report it would draw, as the API's
``GET /v1/journeys/{name}/report`` does.

Each experiment's section has two forms, posted to
``/journeys/{name}/report/experiments/{step}/winner`` and ``.../stop``: an operator picks a
winner or stops the experiment, as ``POST /v1/journeys/{name}/experiments/{step}/winner``
and ``.../stop`` do, in the name of the person logged in.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from journeyman.domain.experiments import How
from journeyman.report import report_csv
from journeyman.web import report_charts as charts
from journeyman.web import views, zones
from journeyman.web.auth import Session
from journeyman.web.report_view import ReportQuery, read_query, report_of
from journeyman.wire import Problem

if TYPE_CHECKING:
    from journeyman.web.pages import _Console

__all__ = ["report_routes"]

log = logging.getLogger("journeyman.web")

_PARAMS = ("version", "from", "to", "timezone")
_DECISIONS: dict[str, How] = {"winner": "chosen", "stop": "stopped"}


def report_routes(console: _Console) -> list[Route]:
    """The Report tab's routes; before ``/journeys/{name}/{command}``, which would take
    them for commands."""
    tab = _ReportTab(console)
    return [
        Route("/journeys/{name}/report", console.page(tab.page), methods=["GET"]),
        Route("/journeys/{name}/report.csv", console.page(tab.csv), methods=["GET"]),
        Route(
            "/journeys/{name}/report/experiments/{step}/{decision}",
            console.form(tab.decide),
            methods=["POST"],
        ),
    ]


class _ReportTab:
    def __init__(self, console: _Console) -> None:
        self.console = console
        self.runtime = console.runtime

    async def _query(self, request: Request) -> tuple[Any, ReportQuery | None, Problem | None]:
        found = await views.find_journey(self.runtime, request.path_params["name"])
        if found is None:
            return None, None, None
        latest = found[0]
        given = {k: v for k in _PARAMS if (v := request.query_params.get(k, "").strip())}
        # Days in the zone the person picked (UTC until they do), unless the URL names one.
        zone = zones.read_zone(request.cookies.get(zones.ZONE_COOKIE))
        try:
            return latest, await read_query(self.runtime, latest, given, zone), None
        except Problem as problem:  # shown above the form; the report of the defaults below
            return latest, await read_query(self.runtime, latest, {}, zone), problem

    async def page(self, request: Request, session: Session) -> Response:
        latest, query, problem = await self._query(request)
        if latest is None or query is None:
            return self.console._not_found(request, session, "no such journey")
        report = await report_of(self.runtime, query)
        if request.headers.get("accept", "").startswith("application/json"):
            return Response(_json(report), media_type="application/json")
        context = {
            "journey": latest,
            "report": report,
            "query": query.params(),
            "problem": problem.body["error"]["message"] if problem else "",
            "versions": list(range(latest.version, 0, -1)),
            "csv_href": f"/journeys/{latest.name}/report.csv?{urlencode(query.params())}",
            "charts": _charts(report),
            "decided": request.query_params.get("decided", ""),
        }
        status = problem.status if problem else 200
        return self.console.render(request, session, "report.html", context, status)

    async def csv(self, request: Request, session: Session) -> Response:
        latest, query, problem = await self._query(request)
        if latest is None or query is None:
            return self.console._not_found(request, session, "no such journey")
        if problem is not None:
            return Response(problem.body["error"]["message"], problem.status)
        report = await report_of(self.runtime, query)
        headers = {"Content-Disposition": f'attachment; filename="{latest.name}-report.csv"'}
        return Response(report_csv(report), headers=headers, media_type="text/csv; charset=utf-8")

    async def decide(self, request: Request, session: Session) -> Response:
        """An operator's winner or stop, from the experiment's forms on the Report tab."""
        # Here: the API's modules import the console's package, which imports this one.
        from journeyman.experiments_api import find_experiment, variant_named

        params = request.path_params
        how = _DECISIONS.get(params["decision"])
        try:
            journey, step = find_experiment(self.runtime, params["name"], params["step"])
            if how is None:
                raise Problem(404, "decision", "exists", "the decision must be winner or stop")
            given = request.state.fields.get("variant") or None
            variant = variant_named(step, given, required=how == "chosen")
        except Problem as problem:
            message = problem.body["error"]["message"]
            return self.console.render(
                request, session, "error.html", {"message": message}, problem.status
            )
        target = f"/journeys/{quote(journey.name, safe='')}/report"
        try:
            await self.runtime.decide_experiment(journey, step, variant, how, session.user)
        except Exception:
            log.exception("the console's decision of %s.%s failed", journey.name, step.id)
            return RedirectResponse(f"{target}?decided=failed", 303)
        return RedirectResponse(f"{target}?{urlencode({'decided': f'{how}:{step.id}'})}", 303)


def _charts(report: dict[str, Any]) -> dict[str, Any]:
    """The report's pictures, as markup ready to put in the page (escaped when built)."""
    holdouts = [arm["name"] for arm in report["arms"] if arm["holdout"]]
    return {
        "conversion": {
            goal["name"]: Markup(
                charts.conversion_chart(
                    goal["name"], goal["over_time"], holdouts, report["timezone"]
                )
            )
            for goal in report["goals"]
        },
        "legend": {goal["name"]: _legend(goal["over_time"], holdouts) for goal in report["goals"]},
        "funnel": Markup(charts.funnel_chart(report["entries"], report["steps"])),
        "time": Markup(charts.time_chart(report["goals"])),
    }


def _legend(series: list[dict[str, Any]], holdouts: list[str]) -> list[dict[str, Any]]:
    """Each line of a conversion chart: its name, colour and last point."""
    found = []
    for index, one in enumerate(series):
        known = [p for p in one["points"] if p["rate"] is not None]
        found.append(
            {
                "name": one["name"],
                "holdout": one["name"] in holdouts,
                "colour": charts.colour(index, one["name"] in holdouts),
                "last": known[-1] if known else None,
            }
        )
    return found


def _json(data: Any) -> bytes:
    import msgspec

    return msgspec.json.encode(data)
