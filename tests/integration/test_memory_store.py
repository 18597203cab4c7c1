"""``memory://``: the in-memory store, as a user meets it.

The storage contract runs on it with every other backend (the ``memory`` backend of
tests/stores.py); these tests cover what is its own: it keeps nothing, it is no one
else's, and the commands that would open it from a process of their own say so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.domain.core import Changes
from journeyman.domain.state import Profile
from journeyman.storage import StorageURLError, open_store
from tests.conftest import BASE, write_workspace
from tests.servers import Journeyman


def test_every_memory_store_starts_empty_and_forgets_everything_when_closed() -> None:
    async def check() -> None:
        first, second = open_store("memory://"), open_store("memory://")
        await first.open()
        await second.open()
        await first.commit(Changes(profiles={"ada": Profile(id="ada", traits={"plan": "pro"})}))
        assert await first.profile("ada") == Profile(id="ada", traits={"plan": "pro"})
        assert await second.profile("ada") is None
        await first.close()
        await first.open()
        assert await first.profile("ada") is None
        await first.close()
        await second.close()

    asyncio.run(check())


def test_a_memory_url_with_anything_after_it_is_refused() -> None:
    with pytest.raises(StorageURLError, match=r"'memory://shared'.*nothing after memory://"):
        open_store("memory://shared")


@pytest.mark.parametrize(
    ("command", "instead"),
    [
        (["trace", "ada"], "GET /v1/profiles/ada"),
        (["migrate"], "no schema to migrate"),
        (["migrate", "--from", "sqlite:///old.db"], "no schema to migrate"),
    ],
)
def test_commands_that_open_the_database_themselves_refuse_memory_in_one_line(
    command: list[str], instead: str
) -> None:
    result = CliRunner().invoke(main, [*command, "--db", "memory://"])
    assert result.exit_code == 2, result.output
    assert "memory:// lives inside the process that serves it" in result.output
    assert instead in result.output
    assert "Traceback" not in result.output


def test_serve_on_memory_says_nothing_is_kept_and_a_restart_starts_empty(tmp_path: Path) -> None:
    workspace = write_workspace(tmp_path / "ws", BASE)
    with Journeyman(workspace, "memory://", tmp_path) as server:
        server.start()
        assert "storage    memory:// (in memory: nothing is kept" in server.output
        with server.client() as api:
            identify = {"userId": "ada", "traits": {"firstName": "Ada"}}
            assert api.post("/v1/identify", json=identify).status_code == 202
            answer = api.get("/v1/profiles/ada")
            assert answer.status_code == 200, answer.text
            assert answer.json()["traits"] == {"firstName": "Ada"}
        assert server.stop() == 0, server.output

        server.start()
        with server.client() as api:
            assert api.get("/v1/profiles/ada").status_code == 404
        assert server.stop() == 0, server.output
