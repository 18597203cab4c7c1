"""The console with the built-in mail catcher, as ``journeyman serve --catcher`` runs it:
email goes over SMTP to the catcher on a loopback port, and the console shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from journeyman.runtime.service import Runtime
from tests.unit.test_web import ADMIN, JSON, XSS, Client, identify, log_in, run_console, track
from tests.waiting import eventually


def test_caught_mail_is_listed_and_rendered_in_a_sandboxed_frame(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "u1@example.com", "firstName": XSS})
        await track(client, {"userId": "u1", "event": "signed_up", "properties": {"plan": "free"}})
        await log_in(client)

        async def caught_mail() -> list[dict[str, Any]]:
            mail: list[dict[str, Any]] = (await client.get("/v1/mail", headers=ADMIN)).json()[
                "mail"
            ]
            return mail

        caught = await eventually(caught_mail, "the email in the catcher")
        assert caught[0]["to"] == ["u1@example.com"]
        assert (await client.get("/messages", headers=JSON)).json()["caught_mail"] == caught
        page = (await client.get("/messages")).text
        assert "Caught mail" in page
        assert '<iframe class="preview" sandbox="" title="Caught email' in page
        assert "<script>alert" not in page

    run_console(tmp_path, test, catcher=True)
