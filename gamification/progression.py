"""Levels, streaks and leaderboard periods. Pure Python.

XP is the sum of settled points. Level n needs ``LEVEL_STEP * n * (n - 1) / 2`` XP: each level
costs ``LEVEL_STEP`` more than the one before, so early levels come after a round or two and later
ones reward staying. A streak counts consecutive *local* days (the player's time zone) with at
least one submission.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LEVEL_STEP = 500  # XP: about one good round


def level_for_xp(xp: int) -> int:
    """1 for 0 XP; the largest n with ``xp_for_level(n) <= xp``."""
    xp = max(int(xp), 0)
    n = int((1 + math.sqrt(1 + 8 * xp / LEVEL_STEP)) / 2)
    # Guard the float square root at exact boundaries.
    while xp_for_level(n + 1) <= xp:
        n += 1
    while n > 1 and xp_for_level(n) > xp:
        n -= 1
    return n


def xp_for_level(level: int) -> int:
    return LEVEL_STEP * level * (level - 1) // 2


def local_day(moment: datetime, time_zone: str) -> date:
    """The calendar day ``moment`` (aware) falls on where the player lives; unknown zones are UTC."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).date()


def streak_after(*, last_day: date | None, streak: int, today: date) -> int:
    """The streak after playing on ``today``, given the last local day played and the streak then."""
    if last_day is None or streak <= 0:
        return 1
    if today == last_day:
        return streak
    if today == last_day + timedelta(days=1):
        return streak + 1
    if today < last_day:  # a submission stamped earlier than the last one (offline batch): no change
        return streak
    return 1


def week_key(moment: datetime) -> str:
    """ISO week of ``moment`` in UTC, e.g. ``2026-W48``: weekly leaderboards reset Monday 00:00 UTC."""
    year, week, _ = moment.astimezone(ZoneInfo("UTC")).isocalendar()
    return f"{year}-W{week:02d}"
