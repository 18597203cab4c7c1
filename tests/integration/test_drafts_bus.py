"""A draft published with a bus: ``serve --bus`` keeps the draft and publishes the folder,
and a ``journeyman worker`` runs the new version once it sees it (within a second): sign-ups
from then on get the email the draft chose. Real PostgreSQL, NATS and SMTP."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.cluster import serve_with_worker
from tests.conftest import write_workspace
from tests.integration.test_serve import WRITE, accepted, mails_to, smtp_channel
from tests.servers import SmtpServer
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

TEMPLATES = """
kind: event
name: signed_up
---
kind: template
name: hello
channel: email
transactional: true
to: "{{ profile.email }}"
subject: "Hello"
text: "Hello."
---
kind: template
name: hello_again
channel: email
transactional: true
to: "{{ profile.email }}"
subject: "Hello from the draft"
text: "Hello again."
"""
JOURNEY = """\
# Greets every sign-up.
kind: journey
name: greet
entry:
  event: signed_up
steps:
  - id: hello
    send: hello   # the editor changes it
"""
DRAFT = "/v1/journeys/greet/draft"


def test_a_draft_published_through_serve_is_run_by_the_worker(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", TEMPLATES, smtp_channel(smtp.port))
        (workspace / "journeys").mkdir()
        (workspace / "journeys" / "greet.yaml").write_text(JOURNEY)
        api = serve_with_worker(stack, workspace, store_url, tmp_path)
        with api.client() as admin:
            body = {"userId": "u1", "traits": {"email": "u1@x.test"}}
            accepted(admin.post("/v1/identify", json=body, headers=WRITE))
            accepted(admin.post("/v1/track", json={"userId": "u1", "event": "signed_up"}))
            (first,) = wait_until(lambda: mails_to(smtp, "u1@x.test"), "the first greeting")
            assert first["Subject"] == "Hello"

            draft = admin.get(DRAFT).json()
            document = draft["document"]
            document["steps"][0]["send"] = "hello_again"
            saved = admin.put(DRAFT, json={"document": document, "revision": None, "by": "ops"})
            assert saved.status_code == 200, saved.text
            assert "-    send: hello   # the editor changes it" in saved.json()["diff"]
            assert "+    send: hello_again # the editor changes it" in saved.json()["diff"]
            revision = saved.json()["revision"]
            published = admin.post(f"{DRAFT}/publish", json={"revision": revision, "by": "ops"})
            assert published.status_code == 200, published.text
            assert "greet" in published.json()["plan"]["changed"]
            # the file in the folder is the draft's, its comment kept
            assert (
                "send: hello_again # the editor changes it"
                in (workspace / "journeys" / "greet.yaml").read_text()
            )

            # A publish reaches the worker within a second (docs/deployment.md): sign-ups
            # from then on get the draft's email.
            signed = iter(range(2, 100))

            def greeted_by_the_draft() -> bool:
                user = f"u{next(signed)}"
                body = {"userId": user, "traits": {"email": f"{user}@x.test"}}
                accepted(admin.post("/v1/identify", json=body, headers=WRITE))
                accepted(admin.post("/v1/track", json={"userId": user, "event": "signed_up"}))
                (mail,) = wait_until(lambda: mails_to(smtp, f"{user}@x.test"), user)
                return bool(mail["Subject"] == "Hello from the draft")

            wait_until(greeted_by_the_draft, "a sign-up greeted by the draft's email")
            for user in ("late1", "late2"):
                body = {"userId": user, "traits": {"email": f"{user}@x.test"}}
                accepted(admin.post("/v1/identify", json=body, headers=WRITE))
                accepted(admin.post("/v1/track", json={"userId": user, "event": "signed_up"}))
                (mail,) = wait_until(lambda u=user: mails_to(smtp, f"{u}@x.test"), user)  # type: ignore[misc]
                assert mail["Subject"] == "Hello from the draft"
