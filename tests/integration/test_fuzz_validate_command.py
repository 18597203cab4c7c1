"""`journeyman validate` as a command, in a child process, on workspaces broken at random.

The mutations are those of ``tests/unit/test_fuzz_workspace.py``, which checks validate
in-process on many of them; here a few cases run the real command, so that its exit code
is 0 (sound) or 1 (errors) and it never ends in a traceback. A failure names its seed;
``JOURNEYMAN_FUZZ_SEED=<seed>`` replays that case alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from journeyman.workspace import load_workspace
from tests.fuzzing import seeds
from tests.unit.test_fuzz_workspace import mutated_workspace

SUBPROCESS_CASES = seeds(4)[: max(4, len(seeds(4)) // 50)]


@pytest.mark.parametrize("seed", SUBPROCESS_CASES)
def test_the_validate_command_exits_0_or_1_on_a_damaged_workspace(
    tmp_path: Path, seed: int
) -> None:
    folder = mutated_workspace(seed, tmp_path / "ws")
    loaded = load_workspace(folder)
    process = subprocess.run(
        [sys.executable, "-m", "journeyman", "validate", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    note = f"JOURNEYMAN_FUZZ_SEED={seed}"
    assert process.returncode == (1 if loaded.errors else 0), (note, process.stderr)
    assert "Traceback" not in process.stderr, note
