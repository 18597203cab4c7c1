"""Errors block publishing, warnings do not: each check's severity, as users meet it.

The rule (docs/workspace.md, "Errors and warnings"): what makes a journey unable to run,
or ambiguous, is an error; a path that can never be taken while the journey still runs
is a warning naming that path. Checks are exercised through `journeyman validate`,
`journeyman publish` against a real server, and the HTTP API.
"""

from __future__ import annotations

import asyncio
import os
import re
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from journeyman.api import Keys, create_app
from journeyman.channels.file import FileChannel
from journeyman.cli import main
from journeyman.domain.parse import compile_journey
from journeyman.domain.problems import CHECKS
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace
from tests.servers import ADMIN_KEY, Journeyman

ROOT = Path(__file__).parents[2]
KEYS = Keys(write="w-key", admin="a-key")
ADMIN = {"Authorization": "Bearer a-key"}


def journey(steps: str, name: str = "j", **keys: str) -> str:
    """A journey entered by signed_up; its steps start on line 5, other ``keys`` follow."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    tail = "".join(f"{key}: {value}\n" for key, value in keys.items())
    return f"kind: journey\nname: {name}\nentry: {{event: signed_up}}\nsteps:\n{body}\n{tail}"


def validate(tmp_path: Path, *documents: str) -> tuple[int, list[str]]:
    """`journeyman validate` on BASE plus ``documents``: exit code and printed lines."""
    folder = write_workspace(tmp_path / "ws", BASE, *documents)
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output.splitlines()


SOUND = "sound (3 events, 3 templates"


# The table in docs/workspace.md


def _documented() -> dict[str, tuple[str, str]]:
    """code -> (severity, example) of every row of the checks table."""
    text = (ROOT / "docs" / "workspace.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| `([a-z-]+)` \| (error|warning) \| `(.*)` \|$", text, re.M)
    return {code: (severity, example) for code, severity, example in rows}


def test_the_docs_list_every_check_with_the_severity_it_has() -> None:
    documented = _documented()
    assert {code: severity for code, (severity, _) in documented.items()} == CHECKS
    for code, (severity, example) in documented.items():
        assert (": warning: " in example) == (severity == "warning"), code


def test_every_check_in_the_table_is_one_the_code_reports() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    reported = set(re.findall(r'(?:report|Problem\.of)\(\s*"([a-z-]+)"', source))
    assert reported == set(CHECKS)


# Warnings: a path never taken, and the journey still runs


def test_a_step_no_path_reaches_is_a_warning_naming_the_step(tmp_path: Path) -> None:
    flow = journey(
        "- id: a\n  send: hello_sms\n  next: done\n- id: nudge\n  send: hello_push\n"
        "- id: done\n  end: x"
    )
    code, lines = validate(tmp_path, flow)
    assert code == 0
    assert lines[0] == "doc01.yaml:8: warning: journey j: step nudge: no path leads to this step"
    counts = "3 events, 3 templates, 0 actions, 1 journey, 0 tests, 1 warning"
    assert lines[-1] == f"{tmp_path / 'ws'}: sound ({counts})"


def test_an_on_timeout_after_the_journey_timeout_is_a_warning_naming_the_path(
    tmp_path: Path,
) -> None:
    flow = journey(
        """
        - id: await
          wait_for: {event: purchased, timeout: 3d}
          on_timeout: nudge
        - id: thanks
          end: bought
        - id: nudge
          send: hello_sms
        """,
        timeout="2d",
    )
    code, lines = validate(tmp_path, flow)
    assert code == 0
    assert lines[0] == (
        "doc01.yaml:7: warning: journey j: step await: the on_timeout path to step nudge is "
        "never taken: the timeout ends 3d after entry at the earliest, never before the "
        "journey's timeout of 2d, which ends the instance first"
    )


def test_a_wait_for_timeout_without_on_timeout_names_the_step_it_would_go_to(
    tmp_path: Path,
) -> None:
    flow = journey("- id: await\n  wait_for: {event: purchased, timeout: 100d}\n- id: b\n  end: x")
    code, lines = validate(tmp_path, flow)
    assert code == 0
    assert lines[0].startswith(
        "doc01.yaml:6: warning: journey j: step await: the timeout path to step b is never taken"
    )


def test_a_plain_wait_that_cannot_end_before_the_timeout_stays_an_error(tmp_path: Path) -> None:
    code, lines = validate(
        tmp_path, journey("- id: a\n  wait: 3d\n- id: b\n  end: x", timeout="2d")
    )
    assert code == 1
    assert lines == [
        "doc01.yaml:6: journey j: step a: this wait ends 3d after entry at the earliest, never "
        "before the journey's timeout of 2d",
        "1 error: the workspace is not sound",
    ]


def test_a_wait_behind_a_timeout_path_never_taken_is_not_reported_again(tmp_path: Path) -> None:
    flow = journey(
        """
        - id: await
          wait_for: {event: purchased, timeout: 3d}
          on_timeout: later
        - id: thanks
          end: bought
        - id: later
          wait: 1d
        """,
        timeout="2d",
    )
    code, lines = validate(tmp_path, flow)
    assert code == 0
    assert [line.split(": ")[3] for line in lines[:-1]] == ["step await"]


def test_a_split_arm_of_weight_0_is_a_warning_naming_where_it_goes(tmp_path: Path) -> None:
    flow = journey(
        """
        - id: pick
          split:
            - {weight: 1, goto: a}
            - {weight: 0, goto: holdout}
        - id: a
          end: x
        - id: holdout
          end: held
        """
    )
    code, lines = validate(tmp_path, flow)
    assert code == 0
    assert lines[0] == (
        "doc01.yaml:8: warning: journey j: step pick: the arm to holdout has weight 0: no "
        "profile takes it"
    )


def test_a_split_whose_arms_all_weigh_0_stays_an_error(tmp_path: Path) -> None:
    flow = journey("- id: pick\n  split:\n    - {weight: 0, goto: a}\n- id: a\n  end: x")
    code, lines = validate(tmp_path, flow)
    assert code == 1
    assert "a split needs at least one arm with a weight above 0" in lines[0]


# Errors: zero durations where they make no sense


ACTION = "kind: action\nname: crm\nurl: https://crm.example.com/x\ntimeout: {}\n"
STEPS = "- id: a\n  send: hello_sms"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            journey("- id: a\n  wait: 0s\n- id: b\n  end: x"),
            "doc01.yaml:6: journey j: step a: 'wait' must be longer than 0s, not '0s'",
        ),
        (
            journey("- id: a\n  wait_for: {event: purchased, timeout: 0m}"),
            "doc01.yaml:6: journey j: step a: 'timeout' must be longer than 0s, not '0m'",
        ),
        (
            journey(STEPS, timeout="0s"),
            "doc01.yaml:7: journey j: 'timeout' must be longer than 0s, not '0s'",
        ),
        (
            journey(STEPS, reentry="after 0h"),
            "doc01.yaml:7: journey j: 'reentry': a window of 0s lets a profile in again at "
            "once: write always",
        ),
        (
            "kind: rules\nname: r\ncaps:\n  - {max: 3, per: 0d}\n",
            "doc01.yaml:4: rules r: 'per' must be longer than 0s, not '0d'",
        ),
        (
            "kind: rules\nname: r\nquiet_hours: {from: '21:00', to: '21:00'}\n",
            "doc01.yaml:3: rules r: quiet hours from 21:00 to 21:00 cover no time",
        ),
        (
            ACTION.format("0s"),
            "doc01.yaml:4: action crm: 'timeout' must be longer than 0s, not '0s'",
        ),
        (  # a loop back to itself through a wait of 0s would run forever in one instant
            journey("- id: a\n  send: hello_sms\n- id: b\n  wait: 0s\n  next: a"),
            "doc01.yaml:8: journey j: step b: 'wait' must be longer than 0s, not '0s'",
        ),
        (  # a negative duration does not read as one
            journey("- id: a\n  wait: -5m"),
            "doc01.yaml:6: journey j: step a: 'wait': '-5m' is not a duration: use a number "
            "and a unit s, m, h, d or w, such as 30s, 20m, 3h, 2d, 1w or 1h30m",
        ),
    ],
    ids=[
        "wait",
        "wait_for-timeout",
        "journey-timeout",
        "reentry",
        "cap-per",
        "quiet-hours",
        "action-timeout",
        "loop-through-wait-0s",
        "negative",
    ],
)
def test_a_zero_duration_where_it_makes_no_sense_is_an_error_naming_the_field(
    tmp_path: Path, document: str, expected: str
) -> None:
    code, lines = validate(tmp_path, document)
    assert (code, lines) == (1, [expected, "1 error: the workspace is not sound"])


@pytest.mark.parametrize(
    "document",
    [
        journey("- id: a\n  wait: 1s\n- id: b\n  wait_for: {event: purchased, timeout: 1s}"),
        "kind: rules\nname: r\ncaps:\n  - {max: 0, per: 1d}\nquiet_hours: {from: '21:00', to: "
        "'21:01'}\n",
        journey(STEPS, reentry="after 1s", timeout="2s"),
    ],
    ids=["waits", "rules", "journey"],
)
def test_the_shortest_durations_are_sound(tmp_path: Path, document: str) -> None:
    code, lines = validate(tmp_path, document)
    assert code == 0
    assert lines == [f"{tmp_path / 'ws'}: {lines[-1].split(': ', 1)[1]}"]
    assert SOUND in lines[0]


def test_a_journey_stored_with_a_zero_wait_still_runs_its_instances() -> None:
    """Versions published before zero durations were refused are read back as they were."""
    data = {"name": "old", "entry": {"event": "signed_up"}, "steps": [{"id": "a", "wait": "0s"}]}
    stored = compile_journey({"kind": "journey", **data}, "old v1")
    assert stored is not None
    assert list(stored.steps) == ["a"]


# Publishing: warnings publish, an error is refused and changes nothing


JOURNEY = journey("- id: pause\n  wait: 1d\n- id: greet\n  send: hello_email", name="hello")
WARNED = journey(
    "- id: pause\n  wait: 2d\n- id: greet\n  send: hello_email\n  next: done\n"
    "- id: spare\n  send: hello_sms\n- id: done\n  end: greeted",
    name="hello",
)
BROKEN = journey("- id: pause\n  wait: 0s\n- id: greet\n  send: hello_email", name="hello")


def run_api(
    tmp_path: Path, store_url: str, test: Callable[[httpx.AsyncClient, Runtime], Awaitable[None]]
) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY)
    workspace = load_workspace(folder).workspace
    assert workspace is not None

    async def main() -> None:
        channels = {"email": FileChannel("email", tmp_path / "mail.jsonl")}
        runtime = Runtime(workspace, open_store(store_url), channels, env={}, root=folder)
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                await test(client, runtime)
        finally:
            await runtime.stop()

    asyncio.run(main())


def test_the_api_publishes_a_workspace_with_warnings_and_lists_them(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: httpx.AsyncClient, runtime: Runtime) -> None:
        files = {"base.yaml": BASE, "hello.yaml": WARNED}
        answer = await client.put("/v1/workspace", json={"files": files}, headers=ADMIN)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["published"], body["plan"]["versions"]) == (True, {"hello": 2})
        assert body["problems"] == [
            {
                "file": "hello.yaml",
                "line": 10,
                "severity": "warning",
                "code": "unreachable-step",
                "message": "hello.yaml:10: warning: journey hello: step spare: no path leads "
                "to this step",
            }
        ]
        assert runtime.workspace.journeys["hello"].version == 2

    run_api(tmp_path, store_url, test)


def test_the_api_refuses_a_workspace_with_an_error_and_changes_nothing(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: httpx.AsyncClient, runtime: Runtime) -> None:
        files = {
            "base.yaml": BASE,
            "hello.yaml": BROKEN,
            "spare.yaml": WARNED.replace("name: hello", "name: spare"),
        }
        answer = await client.put("/v1/workspace", json={"files": files}, headers=ADMIN)
        assert answer.status_code == 422
        body = answer.json()
        assert body["published"] is False
        assert [(p["severity"], p["code"], p["message"]) for p in body["problems"]] == [
            (
                "error",
                "zero-duration",
                "hello.yaml:6: journey hello: step pause: 'wait' must be longer than 0s, not '0s'",
            ),
            (
                "warning",
                "unreachable-step",
                "spare.yaml:10: warning: journey spare: step spare: no path leads to this step",
            ),
        ]
        assert runtime.workspace.journeys["hello"].version == 1
        assert "spare" not in runtime.workspace.journeys
        journeys = (await client.get("/v1/journeys", headers=ADMIN)).json()
        assert [j["name"] for j in journeys["journeys"]] == ["hello"]

    run_api(tmp_path, store_url, test)


def test_the_workspace_status_shows_warnings_and_errors_with_their_severity(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: httpx.AsyncClient, runtime: Runtime) -> None:
        assert runtime.root is not None
        (runtime.root / "doc01.yaml").write_text(WARNED)
        status = (await client.get("/v1/workspace", headers=ADMIN)).json()
        assert status["valid"] is True
        assert [(p["severity"], p["code"]) for p in status["problems"]] == [
            ("warning", "unreachable-step")
        ]
        assert status["plan"]["changed"] == ["hello"]
        (runtime.root / "doc01.yaml").write_text(BROKEN)
        status = (await client.get("/v1/workspace", headers=ADMIN)).json()
        assert (status["valid"], status["plan"]) == (False, None)
        assert [(p["severity"], p["code"]) for p in status["problems"]] == [
            ("error", "zero-duration")
        ]

    run_api(tmp_path, store_url, test)


def test_journeyman_publish_prints_warnings_and_publishes_but_refuses_errors(
    tmp_path: Path,
) -> None:
    served = write_workspace(tmp_path / "served", BASE, JOURNEY)
    with Journeyman(served, f"sqlite:///{tmp_path / 'j.db'}", tmp_path) as server:
        server.start()
        proxies = {name: None for name in os.environ if name.lower().endswith("_proxy")}

        folders = (tmp_path / f"ws{n}" for n in range(10))

        def publish(*documents: str) -> tuple[int, str, str]:
            folder = write_workspace(next(folders), BASE, *documents)
            args = ["publish", str(folder), "--url", server.url, "--key", ADMIN_KEY]
            result = CliRunner().invoke(main, args, env=proxies)
            return result.exit_code, result.stdout, result.stderr

        code, out, err = publish(WARNED)
        assert code == 0, err
        assert out.splitlines()[0] == (
            "doc01.yaml:10: warning: journey hello: step spare: no path leads to this step"
        )
        assert out.splitlines()[-1] == "  changed   hello (v2)"
        with server.client() as client:
            assert client.get("/v1/journeys/hello").json()["version"] == 2

        code, out, err = publish(BROKEN, WARNED.replace("name: hello", "name: spare"))
        assert code == 1
        assert err.splitlines() == [
            "doc01.yaml:6: journey hello: step pause: 'wait' must be longer than 0s, not '0s'",
            "1 error: the workspace is not sound",
        ]
        assert "warning: journey spare: step spare: no path leads to this step" in out
        with server.client() as client:
            names = [j["name"] for j in client.get("/v1/journeys").json()["journeys"]]
            assert (names, client.get("/v1/journeys/hello").json()["version"]) == (["hello"], 2)
