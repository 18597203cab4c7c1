"""Every endpoint that reads query parameters refuses one given twice, or one it cannot
read, with a 400 that names the parameter, and answers as usual to one given once.

Which of two values would count is a guess (the API fuzzer once had
``GET /v1/dead-letters?limit=5&limit=x`` answered 200): a client that sends both has a
bug, and should hear of it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from journeyman.runtime.service import Runtime
from tests.integration.test_api import ADMIN, Client, run_api

# Each endpoint that takes query parameters, a good value of each, and a value it refuses
# (None where any text is a value: a search, a profile id or an event name).
WORKSPACE_FILES = {"files": {"extra.yaml": "kind: event\nname: clicked\n"}}
ENDPOINTS: list[tuple[str, str, dict[str, tuple[str, str | None]]]] = [
    ("GET", "/v1/journeys/hello", {"version": ("1", "one")}),
    ("GET", "/v1/journeys/hello/versions/1", {"against": ("1", "first")}),
    ("PUT", "/v1/workspace", {"dry_run": ("true", "maybe")}),
    (
        "GET",
        "/v1/messages",
        {
            "limit": ("5", "x"),
            "profile": ("u1", None),
            "journey": ("hello", None),
            "status": ("queued", None),
        },
    ),
    (
        "GET",
        "/v1/events",
        {
            "limit": ("5", "0"),
            "after": ("0", "-1"),
            "status": ("accepted", "lost"),
            "event": ("signed_up", None),
            "profile": ("u1", None),
        },
    ),
    ("GET", "/v1/dead-letters", {"limit": ("5", "1001")}),
    ("GET", "/v1/profiles", {"q": ("u1", None)}),
]
CASES = [
    pytest.param(method, path, name, good, bad, id=f"{path} {name}")
    for method, path, params in ENDPOINTS
    for name, (good, bad) in params.items()
]


async def call(
    client: Client, method: str, path: str, query: list[tuple[str, str]]
) -> httpx.Response:
    body = WORKSPACE_FILES if method == "PUT" else None
    return await client.request(method, path, params=tuple(query), json=body, headers=ADMIN)


@pytest.mark.parametrize(("method", "path", "name", "good", "bad"), CASES)
def test_a_query_parameter_given_twice_or_unreadable_is_refused_by_name(
    tmp_path: Path,
    store_url: str,
    method: str,
    path: str,
    name: str,
    good: str,
    bad: str | None,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        once = await call(client, method, path, [(name, good)])
        assert once.status_code == 200, once.text

        for twice in ([(name, good), (name, good)], [(name, good), (name, bad or "other")]):
            answer = await call(client, method, path, twice)
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert (error["field"], error["rule"]) == (name, "repeated")
            assert f"'{name}'" in error["message"]

        if bad is not None:
            for query in ([(name, bad)], [(name, bad), (name, good)]):
                answer = await call(client, method, path, query)
                assert answer.status_code == 400, answer.text
                assert answer.json()["error"]["field"] == name

        # Nothing was published by the refused calls: the workspace is as it was.
        assert "clicked" not in runtime.workspace.events

    run_api(tmp_path, store_url, test)
