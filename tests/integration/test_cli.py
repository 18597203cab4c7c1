"""The journeyman command, run in-process as a user would type it."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.storage import open_store
from journeyman.storage.migrations import POSTGRES, SQLITE
from tests.conftest import BASE, write_workspace
from tests.stores import Backend

EXAMPLES = Path(__file__).parents[2] / "examples"

JOURNEY = """
kind: journey
name: hello
entry: {event: signed_up}
steps:
  - id: greet
    send: hello_email
  - id: done
    end: greeted
"""

PASSING_TEST = """
kind: test
name: greets by name
events:
  - at: 0s
    identify: {userId: u1, traits: {email: a@example.com, firstName: Ada}}
  - at: 1s
    track: {userId: u1, event: signed_up, properties: {plan: pro}}
expect:
  - sent: greet
    at: 1s
    subject: Hello Ada
"""

FAILING_TEST = """
kind: test
name: expects the wrong subject
events:
  - at: 0s
    identify: {userId: u1, traits: {email: a@example.com, firstName: Ada}}
  - at: 0s
    track: {userId: u1, event: signed_up}
expect:
  - sent: greet
    subject: Hello Bob
"""


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_help_lists_every_command() -> None:
    code, output = run("--help")
    assert code == 0
    for command in ("validate", "test", "graph"):
        assert command in output


def test_validate_prints_a_summary_for_a_sound_workspace() -> None:
    code, output = run("validate", EXAMPLES)
    assert code == 0
    assert output.strip().endswith("3 journeys, 11 tests)")
    assert "sound" in output


def test_validate_exits_2_for_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    code, output = run("validate", tmp_path / "missing")
    assert code == 2
    assert "missing" in output


def test_test_command_passes_the_examples() -> None:
    code, output = run("test", EXAMPLES)
    assert code == 0, output
    assert "11 passed, 0 failed" in output
    assert "FAIL" not in output


def test_test_command_shows_what_was_expected_and_what_happened(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path, BASE, JOURNEY, PASSING_TEST, FAILING_TEST)
    code, output = run("test", folder)
    assert code == 1
    assert "PASS greets by name" in output
    assert "FAIL expects the wrong subject" in output
    assert "subject 'Hello Bob'" in output
    assert "subject 'Hello Ada'" in output  # what really went out
    assert "1 passed, 1 failed" in output
    assert "--trace" in output


def test_test_command_match_runs_only_matching_tests(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path, BASE, JOURNEY, PASSING_TEST, FAILING_TEST)
    code, output = run("test", folder, "-k", "by name")
    assert code == 0
    assert "1 passed, 0 failed" in output
    code, output = run("test", folder, "-k", "nothing like this")
    assert code == 1
    assert "no journey tests found matching 'nothing like this'" in output


def test_trace_prints_each_profiles_timeline(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path, BASE, JOURNEY, PASSING_TEST)
    code, output = run("test", folder, "--trace")
    assert code == 0
    assert "profile u1" in output
    assert "hello entered: by signed_up" in output
    assert "hello.greet sent: email to a@example.com" in output
    assert "hello.done ended: greeted" in output


def test_test_command_refuses_an_unsound_workspace(tmp_path: Path) -> None:
    broken = JOURNEY.replace("send: hello_email", "send: no_such_template")
    folder = write_workspace(tmp_path, BASE, broken, PASSING_TEST)
    code, output = run("test", folder)
    assert code == 1
    assert "template 'no_such_template' is not defined" in output
    assert "PASS" not in output


def test_graph_prints_a_mermaid_flowchart() -> None:
    code, output = run("graph", EXAMPLES, "abandoned_cart")
    assert code == 0
    lines = output.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  entry(["entry: cart_updated<br/>when event.value > 0"]) --> s_await_order' in lines
    assert '  s_by_value -- "entry.value >= 200" --> s_offer' in lines
    assert '  s_await_order -- "after 2d" --> s_by_value' in lines


def test_graph_names_the_journeys_when_one_is_missing() -> None:
    code, output = run("graph", EXAMPLES, "welcom")
    assert code == 1
    assert "no journey named 'welcom'" in output
    assert "abandoned_cart, reengagement, welcome" in output


@pytest.mark.durable
def test_trace_tells_why_a_profile_got_a_message_and_why_an_event_started_nothing(
    tmp_path: Path, store_url: str
) -> None:
    import asyncio

    from journeyman.channels.file import FileChannel
    from journeyman.domain.state import Event
    from journeyman.runtime.service import Runtime
    from journeyman.workspace import load_workspace

    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY)
    workspace = load_workspace(folder).workspace
    assert workspace is not None

    async def record() -> None:
        channel = FileChannel("email", tmp_path / "mail.jsonl")
        runtime = Runtime(workspace, open_store(store_url), {"email": channel}, env={})
        await runtime.start()
        now = runtime.processor.clock()
        identify = Event(
            name="identify",
            type="identify",
            profile_id="u1",
            timestamp=now,
            properties={"email": "u1@example.com", "firstName": "Ada"},
        )
        signed_up = Event(name="signed_up", profile_id="u1", timestamp=now)
        await runtime.processor.submit([identify, signed_up, signed_up])
        await runtime.stop()

    asyncio.run(record())
    code, output = run("trace", "u1", "--db", store_url)
    assert code == 0, output
    assert "journey hello v1: ended greeted" in output
    assert "greet            sent        email to u1@example.com" in output
    assert "hello: the profile is already in this journey" not in output  # it had ended
    assert "re-entry waits 5m after the last entry" in output
    code, output = run("trace", "nobody", "--db", store_url)
    assert code == 1
    assert "no profile 'nobody'" in output


@pytest.mark.durable
def test_migrate_applies_the_schema_steps_once_and_says_so(
    backend: Backend, store_url: str
) -> None:
    steps = POSTGRES if backend.name == "postgresql" else SQLITE
    code, output = run("migrate", "--db", store_url)
    assert code == 0, output
    assert output.splitlines() == [f"{store_url}: applied schema step {step}" for step in steps]
    code, output = run("migrate", "--db", store_url)
    assert (code, output) == (0, f"{store_url}: the schema is up to date\n")


@pytest.mark.newer_schema
def test_migrate_refuses_a_database_from_a_newer_version(backend: Backend, store_url: str) -> None:
    assert backend.newer_schema is not None
    assert run("migrate", "--db", store_url)[0] == 0
    backend.newer_schema(store_url)
    code, output = run("migrate", "--db", store_url)
    assert code == 1
    assert "newer than this journeyman" in output
    assert "Traceback" not in output


def test_migrate_names_an_unreachable_server_without_its_password() -> None:
    url = "postgresql://jm:s3cret@127.0.0.1:1/journeyman"
    code, output = run("migrate", "--db", url)
    assert code == 1
    assert output.startswith("Error: cannot open postgresql://jm:***@127.0.0.1:1/journeyman: ")
    assert "s3cret" not in output
    assert "Traceback" not in output


def test_serve_names_an_unreachable_database_in_one_line_and_exits_1(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY)
    url = "postgresql://jm:s3cret@127.0.0.1:1/journeyman"
    code, output = run("serve", "--workspace", folder, "--db", url, "--port", "0")
    assert code == 1
    assert output.startswith("Error: cannot open postgresql://jm:***@127.0.0.1:1/journeyman: ")
    assert "s3cret" not in output
    assert "Traceback" not in output


def test_a_bus_needs_postgresql_and_says_so(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY)
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    bus = "nats://127.0.0.1:1"
    code, output = run("worker", "--workspace", folder, "--db", db, "--bus", bus)
    assert (code, output) == (1, f"Error: a worker needs a PostgreSQL database, not {db}\n")
    code, output = run("serve", "--workspace", folder, "--db", db, "--bus", bus, "--port", "0")
    assert code == 1
    assert output == "Error: --bus needs a PostgreSQL database (--db postgresql://...)\n"


@pytest.mark.shared  # a bus runs on PostgreSQL only
def test_serve_names_an_unreachable_bus_in_one_line_and_exits_1(
    tmp_path: Path, store_url: str
) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY)
    code, output = run(
        "serve",
        "--workspace",
        folder,
        "--db",
        store_url,
        "--bus",
        "nats://127.0.0.1:1",
        "--port",
        "0",
    )
    assert code == 1
    assert output.startswith("Error: cannot reach NATS at nats://127.0.0.1:1: ")
