"""Every operation of ``/openapi.json``, fuzzed against a real ``journeyman serve``.

schemathesis reads the document the server serves and sends, for each operation, inputs
that fit it (positive) and inputs that break it (negative), with the write key on the
ingest routes and the admin key on the others. Every answer must be one the document
lists for that operation, with the content type and body it describes; never a 5xx, and
never an answer that takes longer than a few seconds.

The number of examples per operation and mode is small by default, so the suite stays
quick; ``JOURNEYMAN_FUZZ_EXAMPLES=500`` runs a long fuzz by hand.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from journeyman.openapi import SPEC
from tests.servers import ADMIN_KEY, WRITE_KEY, Journeyman

EXAMPLES = int(os.environ.get("JOURNEYMAN_FUZZ_EXAMPLES", "20"))
ANSWER_SECONDS = 10  # a request unanswered this long is a hang
EXAMPLE_WORKSPACE = Path(__file__).parent.parent / "examples"
INGEST = ("/v1/track", "/v1/identify", "/v1/batch")
# Rules no document can state: events' properties must fit the schemas of the workspace's
# event definitions, and a published workspace must be sound. Their schema-valid calls may
# get the documented 400 or 422 that names the rule; every other operation must take what
# fits its document.
RULES_BEYOND_DOCUMENT = {("POST", path) for path in INGEST} | {("PUT", "/v1/workspace")}


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid inputs, and with invalid ones where it takes any input."""
    found = []
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            found.append((method.upper(), path, GenerationMode.POSITIVE))
            if operation.get("parameters") or "requestBody" in operation:
                found.append((method.upper(), path, GenerationMode.NEGATIVE))
    return found


OPERATIONS = _operations()

cases: Counter[str] = Counter()  # cases sent, per operation and mode


@pytest.fixture(scope="module")
def journeyman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    """``journeyman serve`` on the example workspace and a SQLite file of its own."""
    folder = tmp_path_factory.mktemp("fuzz")
    workspace = shutil.copytree(EXAMPLE_WORKSPACE, folder / "workspace")
    with Journeyman(workspace, f"sqlite:///{folder / 'journeyman.db'}", folder) as server:
        yield server.start()


@pytest.fixture(scope="module")
def served(journeyman: Journeyman, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The schema the server serves; the cases sent are counted at the end."""
    schema = schemathesis.openapi.from_url(f"{journeyman.url}/openapi.json", timeout=10)
    schema.config.update(base_url=journeyman.url)
    yield schema
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None and cases:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nAPI fuzz: {sum(cases.values())} cases sent over {len(cases)} operations "
                f"and modes, at most {EXAMPLES} examples each (JOURNEYMAN_FUZZ_EXAMPLES)"
            )


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        client.trust_env = False  # never through a proxy: loopback only
        yield client


def test_the_served_document_is_the_one_the_fuzz_covers(journeyman: Journeyman) -> None:
    with httpx.Client(base_url=journeyman.url, trust_env=False) as client:
        assert client.get("/openapi.json").json() == SPEC


@pytest.mark.parametrize(
    ("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g.value}" for m, p, g in OPERATIONS]
)
def test_every_operation_answers_as_its_document_says(
    served: Any, session: requests.Session, method: str, path: str, mode: GenerationMode
) -> None:
    operation = served[path][method]
    key = WRITE_KEY if path in INGEST else ADMIN_KEY
    label = f"{method} {path} {mode.value}"
    excluded = [positive_data_acceptance] if (method, path) in RULES_BEYOND_DOCUMENT else []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def answers_as_documented(case: schemathesis.Case) -> None:
        cases[label] += 1
        case.call_and_validate(
            excluded_checks=excluded,
            session=session,
            headers={"Authorization": f"Bearer {key}"},
            timeout=ANSWER_SECONDS,
        )

    answers_as_documented()
