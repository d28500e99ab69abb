"""Badges, declared as data: a code, what players read, and a rule over the player's stats.

Adding a badge is adding a line to ``BADGES``; ``badges_earned`` tells which a player qualifies
for, and the service awards the ones they do not have yet. Rules read only ``StatsSnapshot``, so
they are tested without a database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StatsSnapshot:
    rounds_completed: int = 0
    tasks_submitted: int = 0
    golds_settled: int = 0
    perfect_golds: int = 0  # gold checks with quality >= PERFECT_QUALITY
    best_streak: int = 0
    level: int = 1
    campaigns_joined: int = 0


PERFECT_QUALITY = 0.9


@dataclass(frozen=True)
class Badge:
    code: str
    name: str
    description: str
    rule: Callable[[StatsSnapshot], bool]


BADGES: tuple[Badge, ...] = (
    Badge("first-round", "First round", "Finished your first round", lambda s: s.rounds_completed >= 1),
    Badge("ten-rounds", "Regular", "Finished 10 rounds", lambda s: s.rounds_completed >= 10),
    Badge("hundred-tasks", "Centurion", "Submitted 100 segmentations", lambda s: s.tasks_submitted >= 100),
    Badge("thousand-tasks", "Veteran", "Submitted 1,000 segmentations", lambda s: s.tasks_submitted >= 1000),
    Badge("sharp-eye", "Sharp eye", "10 near-perfect quality checks", lambda s: s.perfect_golds >= 10),
    Badge("three-day-streak", "On a roll", "Played 3 days in a row", lambda s: s.best_streak >= 3),
    Badge("week-streak", "Week streak", "Played 7 days in a row", lambda s: s.best_streak >= 7),
    Badge("level-5", "Level 5", "Reached level 5", lambda s: s.level >= 5),
    Badge("explorer", "Explorer", "Joined 3 campaigns", lambda s: s.campaigns_joined >= 3),
)

BADGES_BY_CODE = {badge.code: badge for badge in BADGES}
# Not offered to pupils, who have no streaks (ICO AADC: no pressure to come back every day).
STREAK_BADGES = frozenset({"three-day-streak", "week-streak"})


def badges_earned(stats: StatsSnapshot) -> list[Badge]:
    """Every badge whose rule ``stats`` satisfies, in declaration order."""
    return [badge for badge in BADGES if badge.rule(stats)]
