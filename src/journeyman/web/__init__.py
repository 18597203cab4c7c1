"""The web console: server-rendered pages over a running journeyman, behind a login.

:func:`console` gives the Starlette mount that ``create_app`` serves at ``/``. Pages are
Jinja2 templates with a little plain JavaScript (live counts, the live tail); the journey
graph is laid out on the server (:mod:`journeyman.web.layout`) and drawn as SVG. Each
page answers JSON instead of HTML when asked with ``Accept: application/json``, and the
admin API serves the same data to key holders (:mod:`journeyman.web.views`).
"""

from __future__ import annotations

from journeyman.web.auth import UsersError, parse_users
from journeyman.web.pages import ConsoleSettings, console

__all__ = ["ConsoleSettings", "UsersError", "console", "parse_users"]
