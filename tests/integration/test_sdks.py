"""The analytics libraries teams already run, pointed at a real ``journeyman serve``:
Segment's and RudderStack's, for Python and for Node, each as installed from its registry
(the Python ones by the ``test`` extra, the Node ones by ``npm ci`` in tests/sdk). Each
sends a page view while anonymous, an alias, an identify, a track, a screen and a group in
its own wire format (RudderStack's gzip-compressed); they must land on the profile (the
group as its account) and move it through its journeys. A batch journeyman refuses is
reported once, never sent again."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rudderstack.analytics as rudderstack
import segment.analytics as segment

from tests.conftest import write_workspace
from tests.servers import WRITE_KEY, Journeyman
from tests.waiting import wait_until

SDK_FOLDER = Path(__file__).parents[1] / "sdk"

WORKSPACE = """
kind: event
name: pricing_viewed
page: Pricing
identity: anonymousId
---
kind: event
name: app_opened
screen: Home
---
kind: event
name: signed_up
---
kind: journey
name: pricing
entry: {event: pricing_viewed}
steps:
  - id: settle
    wait: 1d
---
kind: journey
name: onboarding
entry: {event: signed_up}
steps:
  - id: await_app
    wait_for: {event: app_opened, timeout: 2d}
  - id: opened
    wait: 1d
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    tmp = tmp_path_factory.mktemp("sdks")
    workspace = write_workspace(tmp / "ws", WORKSPACE)
    with Journeyman(workspace, f"sqlite:///{tmp / 'j.db'}", tmp) as running:
        running.start()
        yield running
        assert running.stop() == 0, running.output


@pytest.fixture(scope="module")
def node_libraries() -> Path:
    """tests/sdk with its node_modules: ``make sdks`` installs them; a run without make
    installs them here, as the lock file says."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node, "the Node analytics tests need node (make services installs it)"
    assert npm, "the Node analytics tests need npm (make services installs it)"
    if not (SDK_FOLDER / "node_modules" / "@segment" / "analytics-node").is_dir():
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
        done = subprocess.run(command, cwd=SDK_FOLDER, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    return SDK_FOLDER


def _profile(server: Journeyman, profile_id: str) -> Any:
    with server.client() as api:
        answer = api.get(f"/v1/profiles/{profile_id}")
        return answer.json() if answer.status_code == 200 else None


def assert_landed(server: Journeyman, user: str, visitor: str) -> None:
    """The six calls are on the user's profile, the page view made under the anonymous
    id included (and the account_updated its group call recorded), the profile belongs to
    the group's account, and it is where its journeys say."""

    def landed() -> Any:
        found = _profile(server, user)
        return found if found is not None and len(found["events"]) == 7 else None

    found = wait_until(landed, f"the six calls of {user}")
    assert sorted((e["type"], e["name"]) for e in found["events"]) == [
        ("alias", "alias"),
        ("group", "group"),
        ("identify", "identify"),
        ("page", "pricing_viewed"),
        ("screen", "app_opened"),
        ("track", "account_updated"),
        ("track", "signed_up"),
    ]
    assert (found["account"]["id"], found["account"]["traits"]) == (
        f"{user}-team",
        {"name": "Team of " + user, "seats": 3},
    )
    journeys = {i["journey"]: (i["status"], i["step"]) for i in found["instances"]}
    assert journeys == {"pricing": ("waiting", "settle"), "onboarding": ("waiting", "opened")}
    assert found["traits"] == {
        "plan": "pro",
        "email": f"{user}@example.com",
        "timezone": "Europe/Amsterdam",
    }
    assert visitor in found["identities"]["anonymousId"]


PYTHON_LIBRARIES = {"segment": segment, "rudderstack": rudderstack}


def _python_client(name: str, server: Journeyman, errors: list[Any]) -> Any:
    def on_error(error: Exception, batch: Any) -> None:
        errors.append(error)

    library = PYTHON_LIBRARIES[name]
    return library.Client(WRITE_KEY, host=server.url, on_error=on_error, upload_interval=0.05)


@pytest.mark.parametrize("name", list(PYTHON_LIBRARIES))
def test_the_python_libraries_calls_land_on_the_profile_and_start_its_journeys(
    server: Journeyman, name: str
) -> None:
    user, visitor = f"py-{name}", f"py-{name}-visitor"
    errors: list[Any] = []
    client = _python_client(name, server, errors)
    client.page(anonymous_id=visitor, name="Pricing", category="Plans", properties={"plan": "pro"})
    client.alias(previous_id=visitor, user_id=user)
    traits = {"plan": "pro", "email": f"{user}@example.com"}
    client.identify(user_id=user, traits=traits, context={"timezone": "Europe/Amsterdam"})
    client.track(user_id=user, event="signed_up", properties={"plan": "pro"})
    client.screen(user_id=user, name="Home")
    client.group(
        user_id=user, group_id=f"{user}-team", traits={"name": f"Team of {user}", "seats": 3}
    )
    client.flush()
    client.join()
    assert errors == []
    assert_landed(server, user, visitor)


@pytest.mark.parametrize("name", list(PYTHON_LIBRARIES))
def test_a_batch_journeyman_refuses_is_reported_once_and_not_sent_again(
    server: Journeyman, name: str
) -> None:
    user = f"py-{name}-refused"
    errors: list[Any] = []
    client = _python_client(name, server, errors)  # with the library's 10 retries
    began = time.monotonic()
    client.page(user_id=user, name="Pricing")  # pricing_viewed is named by anonymousId
    client.flush()
    client.join()
    (error,) = errors
    assert error.status == 400
    assert "anonymousId" in error.message, error.message
    assert time.monotonic() - began < 5  # no backoff: it was not retried
    with server.client() as api:
        tail = api.get("/v1/events", params={"profile": user}).json()["events"]
    assert [(e["status"], e["error"]["field"]) for e in tail] == [("rejected", "anonymousId")]


@pytest.mark.parametrize("name", ["segment", "rudderstack"])
def test_the_node_libraries_calls_land_on_the_profile_and_start_its_journeys(
    server: Journeyman, node_libraries: Path, name: str
) -> None:
    user, visitor = f"node-{name}", f"node-{name}-visitor"
    command = ["node", str(node_libraries / "send.js"), name, server.url, WRITE_KEY, user, visitor]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_landed(server, user, visitor)
