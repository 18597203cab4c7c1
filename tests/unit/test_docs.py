"""The docs must say what the code does: a new kind, step, option or function fails here
until it is documented, and every YAML example in the docs must read without errors."""

import re
from pathlib import Path

import click
import pytest

from journeyman.cli import main
from journeyman.domain.documents import read_documents
from journeyman.domain.expressions import FUNCTIONS
from journeyman.domain.parse import _EXPECTATIONS, KINDS, STEP_TYPES, parse_documents

ROOT = Path(__file__).parents[2]
WORKSPACE_DOC = (ROOT / "docs" / "workspace.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
EXPRESSIONS_DOC = (ROOT / "docs" / "expressions.md").read_text()
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_section(kind: str) -> None:
    assert f"## kind: {kind}\n" in WORKSPACE_DOC


@pytest.mark.parametrize("step_type", STEP_TYPES)
def test_every_step_type_has_a_section(step_type: str) -> None:
    assert f"#### {step_type}\n" in WORKSPACE_DOC
    assert f"| [`{step_type}`](#{step_type}) |" in WORKSPACE_DOC


@pytest.mark.parametrize("expectation", _EXPECTATIONS)
def test_every_test_expectation_is_documented(expectation: str) -> None:
    assert f"| `{expectation}: " in WORKSPACE_DOC


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_expression_function_is_documented(name: str) -> None:
    assert f"`{name}(" in EXPRESSIONS_DOC


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_cli_command_and_option_is_documented(command: str) -> None:
    assert f"## journeyman {command}\n" in CLI_DOC
    for param in main.commands[command].params:
        if isinstance(param, click.Option):
            assert any(f"`{opt}" in CLI_DOC for opt in param.opts), (command, param.opts)


def test_readme_names_the_test_command_and_links_every_doc() -> None:
    assert "make test" in README
    for doc in ("docs/workspace.md", "docs/expressions.md", "docs/cli.md", "docs/console.md"):
        assert f"({doc})" in README
        assert (ROOT / doc).exists()


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)


@pytest.mark.parametrize("block", _yaml_blocks(WORKSPACE_DOC) + _yaml_blocks(README))
def test_every_yaml_example_in_the_docs_reads_without_errors(block: str) -> None:
    if block.lstrip().startswith("- id:"):  # a step on its own: read it inside a journey
        indented = "\n".join("  " + line for line in block.splitlines())
        block = f"kind: journey\nname: doc\nentry: {{event: e}}\nsteps:\n{indented}\n"
    documents, problems = read_documents(block, "doc.yaml")
    assert problems == []
    parsed = parse_documents(documents)
    assert [str(p) for p in parsed.problems] == []


def test_every_console_page_and_setting_is_documented() -> None:
    console = (ROOT / "docs" / "console.md").read_text()
    for page in (
        "/journeys",
        "/journeys/{name}",
        "/profiles",
        "/events",
        "/messages",
        "/workspace",
    ):
        assert f"(`{page}`)" in console, page
    assert "**Templates** (`/templates`" in console
    assert "JOURNEYMAN_CONSOLE_USERS" in console
