"""Scoring maths: how good a mask is, what it earns, when a submission is implausible. Pure numpy.

Quality is the mean of Dice (overlap) and surface Dice (boundary within
``annotations.metrics.BOUNDARY_TOLERANCE_PX``), both against a reference mask: for points, the
crowd's label of the task, gold check or not; for a gold check's accuracy (server-side), its gold.
It lies in [0, 1].

Points are lexicographic in (quality, speed): ``10 * floor(100 * quality) + speed bonus`` with a
bonus of 0..9. So a mask that is at least one percentage point better always earns more than a
worse one, however fast the worse one was drawn — speed only breaks ties between equally good
masks. Times are in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotations import metrics

MAX_POINTS = 1009  # 10 * 100 + 9
PARTICIPATION_POINTS = 10  # provisional, for a plausible non-blank submission
MIN_PLAUSIBLE_MS = 1500  # nobody reads an image, decides and traces it in under 1.5 s
CLOCK_SLACK_MS = 5000  # client clocks and network: what a round's reported times may exceed wall time by
CHECK_BLOCK_ROUNDS = 5  # gold checks are reported over blocks of this many consecutive rounds ...
CHECK_MIN_CHECKS = 10  # ... holding at least this many checks ...
CHECK_STEP = 0.05  # ... as a mean rounded to this


@dataclass(frozen=True)
class Quality:
    dice: float
    surface_dice: float

    @property
    def value(self) -> float:
        return (self.dice + self.surface_dice) / 2.0


def quality(mask: np.ndarray, reference: np.ndarray) -> Quality:
    """How well ``mask`` matches ``reference`` ((H, W) bool each)."""
    return Quality(dice=metrics.dice(mask, reference), surface_dice=metrics.surface_dice(mask, reference))


def speed_bonus(time_spent_ms: int, expected_ms: int) -> int:
    """0..9: 9 for a task done in a third of the expected time or less, 0 at or beyond it."""
    if expected_ms <= 0 or time_spent_ms >= expected_ms:
        return 0
    share = max(time_spent_ms, 0) / expected_ms  # < 1
    return min(9, int(9 * (1 - share) * 1.5))


def points(quality_value: float, time_spent_ms: int, expected_ms: int) -> int:
    """Settled points for a submission of ``quality_value`` in [0, 1]. Zero quality earns nothing,
    however fast."""
    q = min(max(quality_value, 0.0), 1.0)
    percent = int(np.floor(100 * q + 1e-9))
    if percent == 0:
        return 0
    return 10 * percent + speed_bonus(time_spent_ms, expected_ms)


def provisional_points(*, plausible: bool, blank: bool) -> int:
    """What a submission shows until it settles: the same for every task, gold or not."""
    return PARTICIPATION_POINTS if plausible and not blank else 0


def implausibly_fast(time_spent_ms: int, round_reported_ms: int, round_wall_ms: int) -> bool:
    """True when a submission could not have been drawn by a person.

    ``time_spent_ms`` is what the client reports for this task; ``round_reported_ms`` the sum it
    reported for the round so far, this task included; ``round_wall_ms`` the server's time since the
    round started. A client that claims more time than has passed is lying about its clock.
    """
    return time_spent_ms < MIN_PLAUSIBLE_MS or round_reported_ms > round_wall_ms + CLOCK_SLACK_MS


def check_accuracy(qualities: Sequence[float], *, minimum: int, step: float) -> float | None:
    """What a player is told of their gold checks over a block of rounds: the mean of the checks'
    ``qualities`` (each in [0, 1]) rounded to a multiple of ``step``, or None with fewer than
    ``minimum`` checks. A coarsened mean over many checks carries too little about any one of them
    to tell which tasks they were."""
    if minimum < 1 or not 0 < step <= 1:
        raise ValueError(f"need minimum >= 1 and 0 < step <= 1, got {minimum!r} and {step!r}")
    if len(qualities) < minimum:
        return None
    mean = float(np.mean(np.clip(qualities, 0.0, 1.0)))
    return round(round(mean / step) * step, 6)
