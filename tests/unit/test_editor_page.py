"""The journey editor's pages in-process: where Edit and New journey lead, the name a new
journey needs, and the page's shell (its script, its CSRF token for the draft calls)."""

from __future__ import annotations

import html
from pathlib import Path

from journeyman.runtime.service import Runtime
from tests.unit.test_web import Client, csrf_of, log_in, run_console


def test_edit_and_new_journey_lead_to_the_editor(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        assert (await client.get("/journeys/hello/edit")).status_code == 303  # login first
        await log_in(client)
        journeys = await client.get("/journeys")
        assert 'href="/journeys/new">New journey</a>' in journeys.text
        journey = await client.get("/journeys/hello")
        assert 'href="/journeys/hello/edit">Edit</a>' in journey.text

        page = await client.get("/journeys/hello/edit")
        assert page.status_code == 200
        assert "Content-Security-Policy" in page.headers
        assert '<script src="/static/editor.js" defer></script>' in page.text
        assert f'data-csrf="{await csrf_of(client)}"' in page.text
        assert 'data-journey="hello"' in page.text
        assert 'data-new="false"' in page.text
        assert (await client.get("/static/editor.js")).status_code == 200
        assert (await client.get("/static/editor_graph.js")).status_code == 200
        assert (await client.get("/static/editor.css")).status_code == 200

    run_console(tmp_path, test)


def test_a_new_journey_is_named_first(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await log_in(client)
        asked = await client.get("/journeys/new")
        assert asked.status_code == 200
        assert 'name="name"' in asked.text

        fresh = await client.get("/journeys/new", params={"name": "winback"})
        assert (fresh.status_code, fresh.headers["location"]) == (
            303,
            "/journeys/winback/edit?new=1",
        )
        page = await client.get("/journeys/winback/edit?new=1")
        assert 'data-new="true"' in page.text

        # A journey of that name exists already: its editor, not a new one.
        known = await client.get("/journeys/new", params={"name": "hello"})
        assert (known.status_code, known.headers["location"]) == (303, "/journeys/hello/edit")

    run_console(tmp_path, test)


def test_a_name_that_is_no_name_is_refused_and_said_why(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await log_in(client)
        bad = await client.get("/journeys/new", params={"name": "9 lives"})
        assert bad.status_code == 400
        said = html.unescape(bad.text)
        assert "A journey's name is letters, digits, '_' and '-'" in said
        assert "not '9 lives'" in said
        refused = await client.get("/journeys/new", params={"name": "<b>x</b>"})
        assert refused.status_code == 400
        assert "<b>x</b>" not in refused.text  # shown inert
        assert (await client.get("/journeys/a%20b/edit")).status_code == 404

    run_console(tmp_path, test)
