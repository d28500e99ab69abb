"""Progression and leaderboards in the product: streaks across time zones, ranks, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from gamification import selectors, services
from gamification.models import LeaderboardEntry, PlayerStats
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import square, submission_body
from .test_round_flow import join_and_start

pytestmark = pytest.mark.django_db


def play_one(player, campaign, at: datetime, i: int = 0):
    services.campaign_join(player=player, campaign=campaign)
    game_round = services.round_start(player=player, campaign=campaign, now=at - timedelta(minutes=5))
    task = game_round.round_tasks.first().task_id
    services.submission_submit(
        player=player,
        round_id=game_round.id,
        task_id=task,
        data=submission_body(square(5, 5, 30 + i, 30)),
        idempotency_key=f"streak-key-{i}",
        now=at,
    )


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        # 23:30 UTC on the 24th, then 00:30 UTC on the 26th: in Tokyo that is the 25th and the 26th (a streak);
        # in UTC the 24th and the 26th (broken); in Los Angeles the 24th and the 25th (a streak).
        ("Asia/Tokyo", 2),
        ("UTC", 1),
        ("America/Los_Angeles", 2),
    ],
)
def test_streaks_are_counted_in_the_players_time_zone(alice, zone, expected):
    from .conftest import campaign_make

    game = campaign_make(alice, images=4, golds=0, round_size=1)
    player = UserFactory(time_zone=zone)
    play_one(player, game.campaign, datetime(2026, 11, 24, 23, 30, tzinfo=UTC), 0)
    play_one(player, game.campaign, datetime(2026, 11, 26, 0, 30, tzinfo=UTC), 1)
    assert PlayerStats.objects.get(player=player).streak == expected


def test_own_rank_far_down_the_board(db):
    players = UserFactory.create_batch(30)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    for i, player in enumerate(players):
        services.leaderboard_add(player=player, campaign=None, points=10 * (i // 2), now=now)
    last = players[0]
    standing = selectors.leaderboard_standing(board="global:all", user=last)
    assert standing.rank == 29 and standing.points == 0  # players[0] and [1] share the last place
    top = selectors.leaderboard_top(board="global:all", limit=4)
    assert [s.rank for s in top] == [1, 1, 3, 3] and [s.points for s in top] == [140, 140, 130, 130]
    assert all(s.pseudonym.startswith("calm-otter-") for s in top)
    client = client_for(last)
    body = client.get("/api/v1/leaderboard").json()
    assert body["me"]["rank"] == 29 and len(body["top"]) == 20
    assert "username" not in str(body) and last.username not in str(body)
    weekly = client.get("/api/v1/leaderboard?period=week").json()
    assert weekly["board"].startswith("global:20")
    assert client.get("/api/v1/leaderboard?period=decade").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_concurrent_score_updates_add_up(db):
    """Run against PostgreSQL in CI's real-stack pass, where the threads really interleave."""
    players = UserFactory.create_batch(4)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    barrier = threading.Barrier(16)

    def add(player, points):
        barrier.wait()
        try:
            for _ in range(10):
                services.leaderboard_add(player=player, campaign=None, points=points, now=now)
        finally:
            connection.close()

    threads = [threading.Thread(target=add, args=(players[i % 4], i % 4 + 1)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    points = dict(LeaderboardEntry.objects.filter(board="global:all").values_list("player_id", "points"))
    assert points == {p.pk: 40 * (i + 1) for i, p in enumerate(players)}
    ranks = [selectors.leaderboard_standing(board="global:all", user=p).rank for p in players]
    assert ranks == [4, 3, 2, 1]


def test_badge_for_joining_three_campaigns(alice, player):
    from .conftest import campaign_make

    for _ in range(3):
        services.campaign_join(player=player, campaign=campaign_make(alice, images=1, golds=0).campaign)
    codes = {b["code"] for b in client_for(player).get("/api/v1/me/game").json()["badges"] if b["earned_at"]}
    assert "explorer" in codes


def test_campaign_dates_are_enforced(alice, player):
    from .conftest import campaign_make

    game = campaign_make(alice, ends_at=datetime(2020, 1, 1, tzinfo=UTC))
    client = client_for(player)
    client.post(f"/api/v1/campaigns/{game.campaign.pk}/join", {}, format="json")
    response = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds")
    assert response.status_code == 409 and response.json()["error"]["code"] == "campaign_ended"


def test_gold_checks_are_handed_out_as_often_as_any_task(alice):
    """One ranking for golds and ordinary tasks: how often a task is handed out says nothing about
    whether it is a check, for new players or old (no per-player gold rate)."""
    from gamification.models import RoundTask

    from .conftest import campaign_make

    game = campaign_make(alice, images=40, golds=20, round_size=10, gold_rate=0.1)
    for _ in range(8):
        join_and_start(client_for(UserFactory()), game.campaign)
    handed = RoundTask.objects.values_list("task_id", "is_gold")
    counts = {}
    for task_id, is_gold in handed:
        counts.setdefault(task_id, [is_gold, 0])[1] += 1
    assert len(counts) == 40 and sum(is_gold for is_gold, _ in counts.values()) == 20
    assert {n for _, n in counts.values()} == {2}  # 80 hand-outs: every task twice, gold or not
