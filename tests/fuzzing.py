"""Shared settings of the fuzz tests (``tests/*/test_fuzz_*.py``).

The defaults keep every fuzz test quick enough for the normal suite, and run the same
cases every time. ``make fuzz`` sets ``JOURNEYMAN_FUZZ_EXAMPLES`` to run many more, new
ones on every run:

    JOURNEYMAN_FUZZ_EXAMPLES=2000 pytest -q tests/unit/test_fuzz_domain.py

To reproduce a failure: a hypothesis test prints the smallest failing example and a
``@reproduce_failure(...)`` line to paste above the test; a mutation fuzzer prints the
seed of the failing case, which ``JOURNEYMAN_FUZZ_SEED=<seed>`` replays alone.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta

from hypothesis import HealthCheck, settings

__all__ = ["examples", "fuzz_settings", "long_run", "seeds"]

_EXAMPLES = "JOURNEYMAN_FUZZ_EXAMPLES"
_SEED = "JOURNEYMAN_FUZZ_SEED"


def _whole_number(variable: str) -> int | None:
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{variable} must be a whole number, not {text!r}") from None


def long_run() -> bool:
    """Whether ``JOURNEYMAN_FUZZ_EXAMPLES`` asks for a long run."""
    return _whole_number(_EXAMPLES) is not None


def examples(default: int) -> int:
    """How many cases a fuzz test runs: ``default``, or ``JOURNEYMAN_FUZZ_EXAMPLES`` when
    that is set to a larger whole number."""
    return max(default, _whole_number(_EXAMPLES) or 0)


def fuzz_settings(default: int, *, deadline_ms: int = 2000) -> settings:
    """Hypothesis settings for a fuzz test: ``examples(default)`` cases, each within
    ``deadline_ms`` (a case that takes longer fails, as a stall would), the same cases on
    every run of the normal suite and fresh ones in a long run."""
    return settings(
        max_examples=examples(default),
        deadline=timedelta(milliseconds=deadline_ms),
        derandomize=not long_run(),
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def seeds(default: int) -> list[int]:
    """Seeds of the cases of a mutation fuzzer: ``examples(default)`` of them, the same on
    every run of the normal suite and fresh ones in a long run; only the one given by
    ``JOURNEYMAN_FUZZ_SEED`` when that is set."""
    replay = _whole_number(_SEED)
    if replay is not None:
        return [replay]
    rng = random.Random() if long_run() else random.Random(20260105)
    return [rng.randrange(2**32) for _ in range(examples(default))]
