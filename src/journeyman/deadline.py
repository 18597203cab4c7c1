"""A limit on wall-clock time for work that may not settle by itself.

A journey that waits in a loop has timers forever, and a schedule makes runs until the
clock stops; on a virtual clock either runs as fast as the machine allows, for as long as
it is let. :class:`Deadline` is a moment on the monotonic clock; the
:class:`~journeyman.simulator.Simulator` calls its :meth:`~Deadline.check` before each
batch (and template renders inside :func:`~journeyman.domain.templates.guarded` as they
go), and :class:`TooSlow` stops them once it has passed. ``journeyman test`` gives each
test one (``--time-limit``), as the editor gives its test runs, tries and previews.
"""

from __future__ import annotations

import time

from journeyman.errors import JourneymanError

__all__ = ["Deadline", "TooSlow"]


class TooSlow(JourneymanError):
    """A test run, a try or a preview that went on past its :class:`Deadline`."""

    def __init__(self, what: str, seconds: float, done: str = "") -> None:
        super().__init__(f"{what} took longer than {seconds:g} s{done}")
        self.what = what
        self.seconds = seconds


class Deadline:
    """A moment on the monotonic clock; :meth:`check` raises :class:`TooSlow` past it."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.at = time.monotonic() + seconds
        self.done = ""  # what was done by then, said with the error

    @property
    def passed(self) -> bool:
        return time.monotonic() > self.at

    def check(self) -> None:
        if self.passed:
            raise TooSlow(self.what, self.seconds, self.done)
