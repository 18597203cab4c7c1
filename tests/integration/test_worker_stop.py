"""A worker stops promptly on SIGTERM, even while its database is away.

A worker whose batches and delivery outcomes keep failing gives up at its stop rather
than trying on: nothing it failed to apply was acknowledged, so JetStream delivers it
again, and nothing is lost. Uses the scale-out fixtures of tests/integration/test_bus.py (PostgreSQL
and NATS JetStream, workers as child processes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.cluster import TcpProxy, elapsed
from tests.integration.test_bus import (  # noqa: F401 - the fixtures are used by name
    Cluster,
    Load,
    _needs_nats,
    applied_events,
    check_outcome,
    cluster,
    profiles,
    stream_empties,
    wait_for_outcome,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.shared

# A "does it hang" bound, not a timing: before, such a stop took 20 to 30 seconds.
PROMPT = 10.0


def test_a_worker_whose_database_is_away_stops_promptly_and_loses_nothing(
    cluster: Callable[..., Cluster],  # noqa: F811 - the fixture, imported above
    store_url: str,
) -> None:
    target = urlsplit(store_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        routed = store_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        c = cluster(db=routed)
        api = c.serve()
        first = c.worker()
        names = profiles(200)
        load = Load(api.url, names, threads=2, batch=100)
        posting = load.start()
        wait_until(lambda: applied_events(c) >= 200, "the load to be under way", timeout=60)
        proxy.cut()
        wait_until(lambda: "failed" in first.output, "the worker to meet the outage", timeout=30)
        stopping = time.monotonic()
        first.stop(timeout=60)
        assert elapsed(stopping) < PROMPT, first.output[-3000:]
        proxy.restore()
        posting.join()
        c.worker()  # takes over what the first one had not acknowledged
        wait_until(lambda: applied_events(c) == load.posted, "every event", timeout=60)
        wait_for_outcome(c, len(names))
        check_outcome(c, names, killed=True)  # sends in flight at the stop may repeat
        stream_empties(c)
