"""Experiments: which variant a profile gets, and when one variant has won.

A profile's variant is drawn as a split draws its arm: from a hash of the profile id, the
journey and the step, so it is the same in every process and on every retry. Once a
:class:`Decision` is stored for the step (a winner picked by the policy or by an
operator, or the experiment stopped), every new profile gets its variant.

The winner policy is a Bayesian probability-to-be-best: each variant's conversion rate
on the goal has a Beta(1, 1) (uniform) prior, so its posterior after ``c`` conversions of
``n`` profiles is Beta(1 + c, 1 + n - c); the probability that a variant's rate is the
highest of all is estimated by :data:`DRAWS` seeded Monte Carlo draws from the
posteriors (the same data always give the same answer). A variant wins once every
variant has ``min_per_variant`` profiles, ``min_time`` has passed since the experiment's
first profile, and its probability to be best reaches ``confidence``.

What that guarantees, and what it does not: the probability is the posterior one under
uniform priors and independent arms, with the Monte Carlo error of :data:`DRAWS` draws
(a standard error under 0.002 near 0.95). It is not a frequentist test that controls
error when looked at repeatedly: with no real difference, one look at k variants picks
a winner about k * (1 - confidence) of the time, and checking again as data arrive
raises that. ``min_per_variant`` and ``min_time`` limit how early it may look; they do
not make the error rate exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from journeyman.domain import model as m

__all__ = [
    "DRAWS",
    "METHOD",
    "Arm",
    "Decision",
    "choose",
    "decision_key",
    "probability_best",
    "started_key",
]

DRAWS = 20_000
METHOD = (
    "Bayesian probability to be best: Beta(1,1) priors on each variant's conversion rate, "
    f"posterior Beta(1+conversions, 1+profiles-conversions), {DRAWS} seeded Monte Carlo draws"
)
How = Literal["winner", "chosen", "stopped"]


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's data: ``n`` profiles got it, ``conversions`` of them reached the goal."""

    name: str
    n: int
    conversions: int


@dataclass(frozen=True, slots=True)
class Decision:
    """Every new profile at the step gets ``variant``: the policy's ``winner``, an
    operator's ``chosen`` one, or the fallback of a ``stopped`` experiment."""

    journey: str
    step: str
    variant: str
    how: How
    at: datetime
    by: str = ""  # who: an operator's name, or "policy"
    metric: str = ""
    data: tuple[Arm, ...] = ()  # what it was decided on
    probabilities: Mapping[str, float] | None = None  # P(best) of each variant

    def as_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "step": self.step,
            "variant": self.variant,
            "how": self.how,
            "at": self.at.isoformat(),
            "by": self.by,
            "metric": self.metric,
            "data": [
                {"variant": a.name, "n": a.n, "conversions": a.conversions} for a in self.data
            ],
            "probability_best": dict(self.probabilities) if self.probabilities else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        arms = tuple(Arm(a["variant"], int(a["n"]), int(a["conversions"])) for a in data["data"])
        return cls(
            journey=data["journey"],
            step=data["step"],
            variant=data["variant"],
            how=data["how"],
            at=datetime.fromisoformat(data["at"]),
            by=data.get("by", ""),
            metric=data.get("metric", ""),
            data=arms,
            probabilities=data.get("probability_best"),
        )


def probability_best(arms: Sequence[Arm], seed: int | None = None) -> dict[str, float]:
    """Each arm's posterior probability of having the highest conversion rate (ties in
    the draws, which have probability 0, go to the first)."""
    import numpy as np  # imported when the first check needs it: no cost of the hot path

    if seed is None:
        seed = _seed(arms)
    generator = np.random.default_rng(seed)
    draws = np.stack(
        [generator.beta(1 + a.conversions, 1 + a.n - a.conversions, DRAWS) for a in arms]
    )
    best = np.bincount(np.argmax(draws, axis=0), minlength=len(arms))
    return {a.name: float(count) / DRAWS for a, count in zip(arms, best, strict=True)}


def choose(
    policy: m.WinnerPolicy,
    arms: Sequence[Arm],
    started: datetime | None,
    now: datetime,
    seed: int | None = None,
) -> tuple[str | None, dict[str, float] | None]:
    """(the winner or None, each arm's probability to be best, or None before the
    minimums are met)."""
    if started is None or now - started < policy.min_time:
        return None, None
    if not arms or any(a.n < policy.min_per_variant for a in arms):
        return None, None
    found = probability_best(arms, seed)
    name, best = max(found.items(), key=lambda item: item[1])
    return (name if best >= policy.confidence else None), found


def _seed(arms: Sequence[Arm]) -> int:
    """A seed from the data: the same data always give the same probabilities."""
    text = ";".join(f"{a.name}:{a.n}:{a.conversions}" for a in arms)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def started_key(journey: str, step: str) -> str:
    """The settings key of the time the experiment's first profile was seen."""
    return f"experiment-started:{journey}:{step}"


def decision_key(journey: str, step: str) -> str:
    """The settings key of the experiment's decision (JSON of :meth:`Decision.as_json`)."""
    return f"experiment:{journey}:{step}"
