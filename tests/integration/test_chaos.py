"""`make chaos` in miniature: one SIGKILL under load on each deployment, then the account.

``benchmarks/chaos.py`` is a benchmark (about ten kills per deployment, minutes long);
this runs it with one kill, a short load and a short wait, so that the storm keeps
working and a kill that loses an acknowledged event, a timer or an email, or repeats more
sends than a dispatcher has in flight, fails the suite. Real processes, a real SMTP sink,
and for ``bus`` a database and a stream of the run's own on the machine's PostgreSQL and
NATS, all on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.cluster import NATS_URL, nats_missing
from tests.stores import POSTGRES_SERVER, Backend

ROOT = Path(__file__).parents[2]


@pytest.mark.durable  # a SQLite file (mode sqlite), or PostgreSQL with NATS (mode bus)
def test_a_short_sigkill_storm_loses_no_acknowledged_event_timer_or_email(
    backend: Backend,
) -> None:
    mode = "bus" if backend.name == "postgresql" else "sqlite"
    if mode == "bus" and (reason := nats_missing()) is not None:
        pytest.fail(reason)  # CI starts NATS: its absence is a failure, not a skip
    server = urlunsplit(urlsplit(POSTGRES_SERVER)._replace(path=""))
    env = {**os.environ, "JOURNEYMAN_BENCH_POSTGRES": server, "JOURNEYMAN_BENCH_NATS": NATS_URL}
    command = [sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--mode", mode]
    command += ["--kills", "1", "--duration", "4", "--rate", "50", "--wait", "1"]
    command += ["--lease", "3", "--out", "-"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    report = done.stdout + done.stderr
    assert "killed" in report, report
    assert "| **targets met** | yes | yes |" in report, report
    assert done.returncode == 0, report
