"""Mutation fuzzing of workspaces through `journeyman validate`.

Each case starts from a sound workspace (the examples, the suite's base documents, or
the examples of docs/workspace.md), reads its YAML documents, breaks them at random (keys
dropped, values of the wrong type, huge, NUL or right-to-left text, negative and zero
numbers, deep nesting, duplicate names, references to anything, unknown time zones,
broken templates, expressions and durations, damaged files), writes them to a folder and
validates it. Whatever the damage, validate answers with problems that name a file and a
line, and exits 0 (sound) or 1 (errors) as `journeyman validate --help` says: never a
traceback.

Every case is seeded. A failure names its seed; ``JOURNEYMAN_FUZZ_SEED=<seed>`` replays
that case alone. ``JOURNEYMAN_FUZZ_EXAMPLES`` runs more cases (docs/testing.md).
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import yaml
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.workspace import Loaded, load_workspace, workspace_files
from tests.conftest import BASE
from tests.fuzzing import seeds

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs" / "workspace.md"

Files = dict[str, list[Any]]  # file name -> the documents in it


# --- the workspaces the mutations start from -------------------------------------------


def _read(texts: dict[str, str]) -> Files:
    return {name: list(yaml.safe_load_all(text)) for name, text in texts.items()}


def _documented() -> dict[str, str]:
    """Every YAML example of docs/workspace.md that is a document, one file each."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    return {f"doc{i:02}.yaml": block for i, block in enumerate(blocks) if "kind:" in block}


def _starting_points() -> list[Files]:
    examples = {
        path.relative_to(EXAMPLES).as_posix(): path.read_text(encoding="utf-8")
        for path in workspace_files(EXAMPLES)
    }
    return [_read(examples), _read({"base.yaml": BASE}), _read(_documented())]


STARTS = _starting_points()


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


# Every key written in the starting workspaces: the fields a document may have.
FIELDS = sorted(
    {key for files in STARTS for docs in files.values() for doc in docs for key in _keys(doc)}
)


# --- what the mutations put in ---------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "é😀\u202eevil",
    "\t\r\n",
    "x" * 300,
    "${SECRET}",
    "../../etc/passwd",
    "-1",
    "0",
    "null",
    "{{",
    "{% if",
    "}}",
    "<script>alert(1)</script>",
]
ODD_VALUES: list[Any] = [None, True, False, 0, -1, 1.5, 2**64, -(2**63) - 1, [], {}, [None]]
ODD_VALUES += [float("inf"), float("nan"), -0.0, {"": None}, [[[]]]]
NUMBERS: list[Any] = [0, -1, -(10**9), 10**30, 0.5, 2**63, float("inf")]
# YAML that no value written by the dumper can stand for: explicit tags, and numbers longer
# than Python reads. A mutation puts a marker in; writing the file puts the text in its place.
RAW_YAML = {
    "__RAW_0__": "!!int abc",
    "__RAW_1__": "!!float .",
    "__RAW_2__": "!!bool maybe",
    "__RAW_3__": '!!int ""',
    "__RAW_4__": "!!binary aGVsbG8=",
    "__RAW_5__": "!!set {a, b}",
    "__RAW_6__": "!!timestamp 2026-13-45",
    "__RAW_7__": "!!python/object/apply:os.system [echo]",
    "__RAW_8__": "9" * 4000,
    "__RAW_9__": "9" * 5000,
    "__RAW_10__": "-0x" + "f" * 4000,
    "__RAW_11__": "1" * 5000 + "d",
}
NUMBERS += list(RAW_YAML)
ODD_VALUES += list(RAW_YAML)
ZONES = ["Mars/Phobos", "", "UTC\x00", "../../../etc/localtime", "Europe", "Europe/London" * 8]
ZONES += ["europe/paris", "+05:00", "Etc/GMT+99", "posix/Europe/Paris", "/usr/share/zoneinfo"]
DURATIONS = ["-5m", "0s", "0", "99999999999999999999d", "1h30", "d", "5 minutes", "1e3s"]
DURATIONS += ["after -1d", "after 99999999999w", "never ", "1w" * 400, "5m\x00"]
TEMPLATES = ["{{", "{% if x %}", "{{ profile.x | nofilter }}", "{% include 'x' %}", "{{" * 3000]
TEMPLATES += ["{% for i in (1..1000000000) %}x{% endfor %}", "{% raw %}" * 2000, "{{ a | }}"]
TEMPLATES += ["{{ profile.a" + " " * 50_000 + "}}", "{% comment %}" + "{%a" * 5000]
EXPRESSIONS = ["profile.plan ==", "(" * 80 + "1" + ")" * 80, "a.b()", "x" * 3000, "1 < 2 < 3"]
EXPRESSIONS += ['duration("forever")', "event.plan = 'pro'", "profile.__class__", "not " * 70]
TEMPLATE_KEYS = {"subject", "html", "text", "body", "title", "url", "to"}
EXPRESSION_KEYS = {"when", "until", "expr"}
DURATION_KEYS = {"wait", "timeout", "per", "reentry", "after", "window"}
KINDS = ["event", "template", "action", "journey", "rules", "channel", "settings", "test"]


def _nest(value: Any, depth: int, rng: random.Random) -> Any:
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def _places(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) below ``value``: the places a mutation can change."""
    if isinstance(value, dict):
        for key in list(value):
            yield value, key
            yield from _places(value[key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield value, index
            yield from _places(item)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


class Mutator:
    """Breaks a workspace at random, reproducibly: everything comes from ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def mutate(self, files: Files) -> None:
        # Names and ids already in the workspace: a reference to any of them may be wrong.
        self.names = sorted({t for docs in files.values() for t in _texts(docs) if len(t) < 40})
        for _ in range(self.rng.randint(1, 6)):
            operation = self.rng.choice(self.OPERATIONS)
            operation(self, files)

    # the operations, each on a document or a place in one

    def _document(self, files: Files) -> tuple[str, int]:
        name = self.rng.choice(sorted(files))
        if not files[name]:
            files[name].append({})
        return name, self.rng.randrange(len(files[name]))

    def _place(self, files: Files, keys: set[str] | None = None) -> tuple[Any, Any] | None:
        name, index = self._document(files)
        places = [p for p in _places(files[name][index]) if keys is None or p[1] in keys]
        if keys is not None and not places:  # look in every document for such a key
            everywhere = [d for docs in files.values() for d in docs]
            places = [p for doc in everywhere for p in _places(doc) if p[1] in keys]
        return self.rng.choice(places) if places else None

    def _set(self, files: Files, values: list[Any], keys: set[str] | None = None) -> None:
        place = self._place(files, keys)
        if place is not None:
            container, key = place
            container[key] = copy.deepcopy(self.rng.choice(values))

    def drop(self, files: Files) -> None:
        place = self._place(files)
        if place is not None:
            del place[0][place[1]]

    def retype(self, files: Files) -> None:
        self._set(files, ODD_VALUES)

    def text(self, files: Files) -> None:
        self._set(files, [*HOSTILE_TEXT, "y" * self.rng.choice([256, 70_000, 300_000])])

    def number(self, files: Files) -> None:
        self._set(files, NUMBERS)

    def nest(self, files: Files) -> None:
        place = self._place(files)
        if place is not None:
            container, key = place
            depth = self.rng.choice([3, 40, 70, 300])
            container[key] = _nest(container[key], depth, self.rng)

    def reference(self, files: Files) -> None:
        self._set(files, [*self.names, "nowhere", "Welcome", "welcome "])

    def zone(self, files: Files) -> None:
        name, index = self._document(files)
        document = files[name][index]
        if isinstance(document, dict):
            target = self._place(files, {"timezone"})
            if target is None or self.rng.random() < 0.3:
                target = (document, "timezone")
            target[0][target[1]] = self.rng.choice(ZONES)

    def template(self, files: Files) -> None:
        self._set(files, TEMPLATES, TEMPLATE_KEYS)

    def expression(self, files: Files) -> None:
        self._set(files, EXPRESSIONS, EXPRESSION_KEYS)

    def duration(self, files: Files) -> None:
        self._set(files, DURATIONS, DURATION_KEYS)

    def duplicate_document(self, files: Files) -> None:
        name, index = self._document(files)
        target = self.rng.choice(sorted(files))
        files[target].append(copy.deepcopy(files[name][index]))

    def duplicate_item(self, files: Files) -> None:
        name, index = self._document(files)
        lists = [v for c, k in _places(files[name][index]) if isinstance(v := c[k], list) and v]
        if lists:
            items = self.rng.choice(lists)
            items.insert(self.rng.randrange(len(items) + 1), copy.deepcopy(self.rng.choice(items)))

    def kind(self, files: Files) -> None:
        name, index = self._document(files)
        document = files[name][index]
        if isinstance(document, dict):
            document["kind"] = self.rng.choice([*KINDS, "Journey", "nonsense", 5, None])

    def known_key(self, files: Files) -> None:
        """A field some document has, with any value, in any mapping."""
        place = self._place(files)
        if place is not None and isinstance(place[0][place[1]], dict):
            values = [*ODD_VALUES, *HOSTILE_TEXT, *ZONES, *DURATIONS, *TEMPLATES, *EXPRESSIONS]
            place[0][place[1]][self.rng.choice(FIELDS)] = copy.deepcopy(self.rng.choice(values))

    def many(self, files: Files) -> None:
        """A list grown to hundreds of items, all alike (the same step id, say)."""
        name, index = self._document(files)
        lists = [v for c, k in _places(files[name][index]) if isinstance(v := c[k], list) and v]
        if lists:
            items = self.rng.choice(lists)
            items.extend(copy.deepcopy(items[-1]) for _ in range(self.rng.choice([50, 300])))

    def unknown_key(self, files: Files) -> None:
        place = self._place(files)
        if place is not None and isinstance(place[0][place[1]], dict):
            place[0][place[1]][self.rng.choice(["surprise", "", "kind", "name", "0"])] = 1

    def replace_document(self, files: Files) -> None:
        name, index = self._document(files)
        files[name][index] = copy.deepcopy(self.rng.choice([[], "text", None, 7, [{"kind": 1}]]))

    def swap(self, files: Files) -> None:
        first, second = self._place(files), self._place(files)
        if first is not None and second is not None:
            a, b = first[0][first[1]], second[0][second[1]]
            first[0][first[1]], second[0][second[1]] = copy.deepcopy(b), copy.deepcopy(a)

    OPERATIONS: ClassVar[list[Callable[[Mutator, Files], None]]] = [
        drop,
        retype,
        text,
        number,
        nest,
        reference,
        reference,
        zone,
        template,
        expression,
        duration,
        duplicate_document,
        duplicate_item,
        kind,
        known_key,
        known_key,
        many,
        unknown_key,
        replace_document,
        swap,
    ]


def _alias_bomb() -> str:
    """Nine levels of aliases, each repeating the one before nine times: 9**9 values."""
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 10):
        name, before = chr(97 + level), chr(96 + level)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{before}"] * 9) + "]")
    return "\n".join(lines) + "\n"


SPLICES = ["\t", "\x00", ": :", "- [", "{", "'", "&a", "*a", "!!python/object:os.system"]


def _damaged(text: str, rng: random.Random) -> str | bytes:
    """A file's text damaged as an editor or a disk might: cut, spliced, not UTF-8."""
    choice, cut = rng.randrange(7), rng.randrange(len(text) + 1)
    if choice == 0:
        return text[:cut]
    if choice == 1:
        return text[:cut] + rng.choice(SPLICES) + text[cut:]
    if choice == 2:
        return _alias_bomb()
    if choice == 3:
        encoded = text.encode("utf-8")
        return encoded[:cut] + b"\xff\xfe" + encoded[cut:]
    if choice == 4:
        return "---\n" * rng.randint(1, 3)
    if choice == 5:
        return text.replace("\n", "\n" + "  " * rng.randint(1, 3), 1)
    return text + "\n" + text  # every document twice


def _dump(documents: list[Any], rng: random.Random) -> str:
    try:
        if len(documents) == 1 and isinstance(documents[0], dict) and rng.random() < 0.15:
            return json.dumps(documents[0], default=str)  # read by the JSON path
        return yaml.safe_dump_all(documents, allow_unicode=rng.random() < 0.5, sort_keys=False)
    except RecursionError:  # nested too deeply for the writers: write the nesting as text
        depth = rng.choice([500, 5000])
        return "kind: journey\nname: deep\nsteps: " + "[" * depth + "]" * depth + "\n"


def _raw(text: str) -> str:
    for marker, raw in RAW_YAML.items():
        text = text.replace(f'"{marker}"', raw).replace(marker, raw)
    return text


def write_files(files: Files, folder: Path, rng: random.Random | None = None) -> Path:
    """Write ``files`` to ``folder``; with ``rng``, some as JSON and some damaged."""
    folder.mkdir(parents=True)
    for name, documents in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if rng is None:
            path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
            continue
        text = _raw(_dump(documents, rng))
        content = _damaged(text, rng) if rng.random() < 0.1 else text
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def mutated_workspace(seed: int, folder: Path) -> Path:
    """Write the workspace of case ``seed`` to ``folder``."""
    rng = random.Random(seed)
    files = copy.deepcopy(rng.choice(STARTS))
    Mutator(rng).mutate(files)
    return write_files(files, folder, rng)


# --- the properties --------------------------------------------------------------------


def check_problems(loaded: Loaded, folder: Path) -> None:
    """Problems name a file of the workspace and a line in it, and say something."""
    files = {path.relative_to(folder).as_posix() for path in loaded.files}
    for problem in loaded.problems:
        assert problem.file in files or problem.file == folder.as_posix(), str(problem)
        assert problem.line >= 1, str(problem)
        assert problem.message.strip(), str(problem)
        assert problem.severity in ("error", "warning"), str(problem)
    assert (loaded.workspace is None) == bool(loaded.errors)


def check_validate(folder: Path) -> None:
    loaded = load_workspace(folder)
    check_problems(loaded, folder)
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == (1 if loaded.errors else 0), result.output
    assert "Traceback" not in result.output
    for problem in loaded.problems:
        assert str(problem) in result.output


def run_cases(tmp_path: Path, cases: list[int], check: Callable[[Path], None]) -> None:
    for seed in cases:
        try:
            check(mutated_workspace(seed, tmp_path / str(seed)))
        except Exception as error:
            note = f"workspace mutation case {seed}; replay it with JOURNEYMAN_FUZZ_SEED={seed}"
            raise AssertionError(note) from error


def test_validate_answers_any_damaged_workspace_with_problems_never_a_crash(
    tmp_path: Path,
) -> None:
    run_cases(tmp_path, seeds(300), check_validate)


def test_the_fuzzer_starts_from_sound_workspaces_and_every_documented_kind(
    tmp_path: Path,
) -> None:
    for index, files in enumerate(STARTS[:2]):
        loaded = load_workspace(write_files(files, tmp_path / str(index)))
        assert loaded.workspace is not None, [str(p) for p in loaded.errors]
    documented = {d.get("kind") for docs in STARTS[2].values() for d in docs}
    assert set(KINDS) <= documented
