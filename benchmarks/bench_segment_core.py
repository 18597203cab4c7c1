"""What the segments of the realistic mix cost the one core per event, measured two ways.

The stream and the 20 segments are those of ``bench_segments.py`` (:data:`MIX_SEGMENTS`).
The events are drawn before the clock starts, so only ``journeyman.domain.core.apply`` is
timed (or counted):

- ``python benchmarks/bench_segment_core.py``: µs of CPU per event over 20,000 events, with
  and without the segments (medians of 3 runs taking turns); CPU time on a shared machine
  is noisy, so the instructions are counted too:
- ``valgrind --tool=callgrind --callgrind-out-file=/dev/null python
  benchmarks/bench_segment_core.py count --segments --events 5000``: the instructions
  (Ir) of one run; run it again with ``--events 0`` (the same set-up, no event applied) and
  subtract, then divide by the events, for instructions per event. ``PYTHONHASHSEED=0``
  makes the count repeat exactly.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import datetime

from bench_segments import _folder, _load, _mix, core_seconds
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event


def _stream(events: int) -> list[tuple[datetime, list[Event]]]:
    return list(_mix(events, 200))


def run(workspace: Workspace, stream: list[tuple[datetime, list[Event]]]) -> float:
    """CPU seconds of the one core on the stream, each profile keeping what it was left."""
    return core_seconds(workspace, stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("what", nargs="?", choices=["time", "count"], default="time")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--segments", action="store_true", help="count: with the 20 segments")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.what == "count":
        workspace = _load(_folder(args.segments, mix=True))
        stream = _stream(args.events)
        run(workspace, stream)
        return
    plain = _load(_folder(False, mix=True))
    with_segments = _load(_folder(True, mix=True))
    stream = _stream(args.events)
    run(plain, stream[:20])  # warm up
    run(with_segments, stream[:20])
    bare, kept = [], []
    for _ in range(args.rounds):  # taking turns, so that what else runs weighs on both alike
        bare.append(run(plain, stream) / args.events * 1e6)
        kept.append(run(with_segments, stream) / args.events * 1e6)
    print(
        f"mix, one core, {args.events:,} events: "
        f"{statistics.median(bare):.2f} µs CPU per event without segments "
        f"({', '.join(f'{v:.2f}' for v in bare)}), "
        f"{statistics.median(kept):.2f} with 20 ({', '.join(f'{v:.2f}' for v in kept)})"
    )


if __name__ == "__main__":
    main()
