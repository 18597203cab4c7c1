"""The journey as a Temporal workflow, in a module of its own for the workflow sandbox.

One workflow per profile: the welcome is an activity, the wait for the follow-up is
``workflow.wait_condition`` with a timeout, set free by the ``followed_up`` signal; then
a branch on the plan trait the profile signed up with, the offer (an activity), the end.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

SEND_TIMEOUT = timedelta(seconds=60)


@dataclass
class Profile:
    id: str
    plan: str
    email: str
    wait: float  # seconds to wait for the follow-up


@dataclass
class Message:
    profile: str
    step: str
    template: str
    to: str


@workflow.defn(name="welcome")
class Welcome:
    def __init__(self) -> None:
        self.followed = False

    @workflow.signal(name="followed_up")
    def followed_up(self) -> None:
        self.followed = True

    @workflow.run
    async def run(self, profile: Profile) -> str:
        await self.send(profile, "welcome", "welcome_email")
        with contextlib.suppress(TimeoutError):  # no follow-up in time: on all the same
            await workflow.wait_condition(lambda: self.followed, timeout=profile.wait)
        if profile.plan == "pro":
            await self.send(profile, "pro", "pro_offer")
        else:
            await self.send(profile, "basic", "basic_offer")
        return "done"

    async def send(self, profile: Profile, step: str, template: str) -> None:
        message = Message(profile.id, step, template, profile.email)
        await workflow.execute_activity("send", message, start_to_close_timeout=SEND_TIMEOUT)
