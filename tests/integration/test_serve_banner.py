"""What ``journeyman serve`` says when it starts: where its keys come from.

A key from the environment is named, never printed (start logs are kept and shared); a
key the server made is printed, since nothing else shows it.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import BASE, write_workspace
from tests.servers import ADMIN_KEY, WRITE_KEY, Journeyman


def banner(tmp_path: Path, env: dict[str, str]) -> str:
    workspace = write_workspace(tmp_path / "ws", BASE)
    with Journeyman(workspace, f"sqlite:///{tmp_path / 'j.db'}", tmp_path, env) as server:
        server.start()
        assert server.stop() == 0, server.output
        return server.output


def test_keys_from_the_environment_are_named_and_never_printed(tmp_path: Path) -> None:
    output = banner(tmp_path, {})

    assert "write key  from JOURNEYMAN_WRITE_KEY" in output
    assert "admin key  from JOURNEYMAN_ADMIN_KEY" in output
    assert WRITE_KEY not in output
    assert ADMIN_KEY not in output
    assert '-H "Authorization: Bearer $JOURNEYMAN_WRITE_KEY"' in output


def test_keys_the_server_made_are_printed_for_the_user(tmp_path: Path) -> None:
    output = banner(tmp_path, {"JOURNEYMAN_WRITE_KEY": "", "JOURNEYMAN_ADMIN_KEY": ""})

    write = re.search(r"write key  (jm_write_\S+)", output)
    admin = re.search(r"admin key  (jm_admin_\S+)", output)
    assert write is not None, output
    assert admin is not None, output
    assert f"Bearer {write.group(1)}" in output
