"""Scoring, progression and badge maths, without a database."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import numpy as np
import pytest

from gamification import badges, progression, scoring


def disk(radius: int, shift: int = 0, size: int = 64) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return (y - size / 2) ** 2 + (x - size / 2 - shift) ** 2 <= radius**2


def test_quality_is_one_for_a_perfect_mask_and_falls_with_boundary_error():
    assert scoring.quality(disk(20), disk(20)).value == 1.0
    near, far = scoring.quality(disk(20, 1), disk(20)), scoring.quality(disk(20, 6), disk(20))
    assert 1.0 > near.value > far.value > 0
    assert far.surface_dice < far.dice  # the boundary measure punishes a shifted edge harder
    assert scoring.quality(np.zeros((64, 64), bool), disk(20)).value == 0.0


def test_speed_never_beats_accuracy():
    rng = random.Random(7)
    for _ in range(5000):
        better = rng.random()
        worse = better - rng.uniform(0.01, better) if better > 0.01 else 0.0
        slow = scoring.points(better, time_spent_ms=10**7, expected_ms=30_000)
        fast = scoring.points(worse, time_spent_ms=scoring.MIN_PLAUSIBLE_MS, expected_ms=30_000)
        assert slow > fast or slow == fast == 0, (better, worse, slow, fast)


def test_points_range_and_speed_breaks_ties():
    assert scoring.points(0.0, 1, 30_000) == 0
    assert scoring.points(1.0, 1, 30_000) == scoring.MAX_POINTS
    assert scoring.points(0.8, 5_000, 30_000) > scoring.points(0.8, 29_000, 30_000) == 800
    assert all(0 <= scoring.speed_bonus(t, 30_000) <= 9 for t in range(0, 40_000, 500))


def test_implausible_times():
    assert scoring.implausibly_fast(200, 200, 10_000)
    assert not scoring.implausibly_fast(4_000, 12_000, 20_000)
    assert scoring.implausibly_fast(4_000, 60_000, 20_000)  # claims more than the wall clock
    assert not scoring.implausibly_fast(4_000, 24_000, 20_000)  # within the clock slack


def test_check_accuracy_is_a_coarse_mean_and_nothing_with_few_checks():
    assert scoring.check_accuracy([0.9] * 9, minimum=10, step=0.05) is None  # too few to hide which they were
    assert scoring.check_accuracy([0.9] * 10, minimum=10, step=0.05) == 0.9
    assert scoring.check_accuracy([0.8312, 0.8901] * 10, minimum=10, step=0.05) == 0.85  # not 0.8607
    assert scoring.check_accuracy([1.2, -0.1] * 5, minimum=10, step=0.05) == 0.5  # clipped to [0, 1]
    with pytest.raises(ValueError, match="step"):
        scoring.check_accuracy([0.5] * 10, minimum=10, step=0)


def test_one_check_of_a_block_moves_the_reported_accuracy_by_one_step_at_most():
    rng = random.Random(3)
    for _ in range(2_000):
        block = [rng.random() for _ in range(20)]
        changed = [*block[:-1], rng.random()]
        before = scoring.check_accuracy(block, minimum=10, step=0.05)
        after = scoring.check_accuracy(changed, minimum=10, step=0.05)
        assert abs(after - before) <= 0.05 + 1e-9


def test_levels():
    assert [progression.level_for_xp(x) for x in (0, 499, 500, 1499, 1500, 3000)] == [1, 1, 2, 2, 3, 4]
    for level in range(1, 60):
        assert progression.level_for_xp(progression.xp_for_level(level)) == level
        assert progression.level_for_xp(progression.xp_for_level(level) - 1) == max(1, level - 1)


def test_streaks_count_local_days():
    d = date(2026, 11, 24)
    assert progression.streak_after(last_day=None, streak=0, today=d) == 1
    assert progression.streak_after(last_day=d, streak=3, today=d) == 3
    assert progression.streak_after(last_day=date(2026, 11, 23), streak=3, today=d) == 4
    assert progression.streak_after(last_day=date(2026, 11, 22), streak=3, today=d) == 1


def test_local_day_follows_the_players_time_zone():
    late_utc = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    assert progression.local_day(late_utc, "UTC") == date(2026, 11, 24)
    assert progression.local_day(late_utc, "Asia/Tokyo") == date(2026, 11, 25)
    assert progression.local_day(late_utc, "America/Los_Angeles") == date(2026, 11, 24)
    assert progression.local_day(late_utc, "Not/AZone") == date(2026, 11, 24)


def test_week_key_is_iso_week_in_utc():
    assert progression.week_key(datetime(2026, 11, 24, 12, tzinfo=UTC)) == "2026-W48"
    assert progression.week_key(datetime(2027, 1, 1, 12, tzinfo=UTC)) == "2026-W53"


def test_badges_follow_their_rules():
    assert badges.badges_earned(badges.StatsSnapshot()) == []
    codes = {b.code for b in badges.badges_earned(badges.StatsSnapshot(rounds_completed=1, tasks_submitted=100))}
    assert codes == {"first-round", "hundred-tasks"}
    assert "week-streak" in {b.code for b in badges.badges_earned(badges.StatsSnapshot(best_streak=7))}
    assert len(badges.BADGES_BY_CODE) == len(badges.BADGES)
