"""Shared fixtures: workspaces written from YAML text, simulators on a virtual clock."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from journeyman.domain.model import Workspace
from journeyman.domain.parse import DEFAULT_TEST_START
from journeyman.simulator import Simulator
from journeyman.workspace import Loaded, load_workspace

START = DEFAULT_TEST_START  # Monday 2026-01-05 00:00 UTC

# Documents most tests need; a test adds its own journey (and more) to these.
BASE = """
kind: event
name: signed_up
schema:
  type: object
  properties:
    plan: {type: string}
---
kind: event
name: purchased
schema:
  type: object
  properties:
    order_id: {type: string}
    total: {type: number}
---
kind: event
name: deleted
---
kind: template
name: hello_email
channel: email
transactional: true
subject: "Hello {{ profile.firstName | default: 'there' }}"
text: "Plan {{ entry.plan }}"
---
kind: template
name: hello_sms
channel: sms
body: "Hello by SMS"
---
kind: template
name: hello_push
channel: push
title: "Hello"
body: "Hello by push"
"""


def write_workspace(folder: Path, *documents: str) -> Path:
    """Write each YAML text to its own file in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(documents):
        (folder / f"doc{index:02}.yaml").write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def load(tmp_path: Path) -> Callable[..., Loaded]:
    """Load a workspace made of the given YAML texts (without BASE)."""

    def loader(*documents: str) -> Loaded:
        return load_workspace(write_workspace(tmp_path / "ws", *documents))

    return loader


@pytest.fixture
def workspace(load: Callable[..., Loaded]) -> Callable[..., Workspace]:
    """A sound workspace of BASE plus the given YAML texts; fails the test on errors."""

    def build(*documents: str) -> Workspace:
        loaded = load(BASE, *documents)
        errors = [str(p) for p in loaded.errors]
        assert loaded.workspace is not None, "\n".join(errors)
        return loaded.workspace

    return build


@pytest.fixture
def simulate(workspace: Callable[..., Workspace]) -> Callable[..., Simulator]:
    """A simulator over BASE plus the given YAML texts, starting at START."""

    def build(*documents: str, start: datetime = START, fail: tuple[str, ...] = ()) -> Simulator:
        return Simulator(workspace(*documents), start, fail=fail)

    return build


# The `store` fixture and the backend switch (--backend, JOURNEYMAN_TEST_BACKENDS).
pytest_plugins = ["tests.stores"]
