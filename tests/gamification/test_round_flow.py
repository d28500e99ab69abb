"""The game as a volunteer plays it, through the API: join, round, submit, settle, progress."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from gamification import services, tasks
from gamification.models import LeaderboardEntry, PlayerStats, Round, Submission
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import GOLD, backdate, campaign_make, square, submission_body

pytestmark = pytest.mark.django_db


def join_and_start(client, campaign) -> dict:
    assert client.post(f"/api/v1/campaigns/{campaign.pk}/join", {}, format="json").status_code == 200
    response = client.post(f"/api/v1/campaigns/{campaign.pk}/rounds")
    assert response.status_code == 201, response.json()
    backdate(Round.objects.get(pk=response.json()["id"]))
    return response.json()


def submit(client, round_id, task_id, body, key=None):
    key = key or uuid.uuid4().hex
    return client.post(
        f"/api/v1/rounds/{round_id}/tasks/{task_id}/submit", body, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def near_gold(i: int):
    """A careful player's mask for their i-th task: the gold's shape, its right edge off by i px.
    (The same mask on every task would be flagged as pasted.)"""
    return square(10, 10, 40 - i, 30)


def play_round(client, campaign, draw=near_gold) -> dict:
    data = join_and_start(client, campaign)
    for i, task in enumerate(data["tasks"]):
        response = submit(client, data["id"], task["id"], submission_body(draw(i)))
        assert response.status_code == 201, response.json()
    return data


def test_researcher_creates_a_campaign_and_volunteers_list_and_join_it(alice, player):
    from annotations.models import Dataset

    game = campaign_make(alice)
    dataset = Dataset.objects.get(pk=game.campaign.dataset_id)
    body = {"name": "Find the lesions", "dataset": dataset.pk, "label_classes": [dataset.label_classes.get().pk]}
    created = client_for(alice).post("/api/v1/campaigns", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["gold_rate"] == 0.15 and "invite_code" in created.json()

    listed = client_for(player).get("/api/v1/campaigns").json()["results"]
    assert {c["name"] for c in listed} >= {"Find the lesions"}
    assert all("gold_rate" not in c and "invite_code" not in c for c in listed)
    joined = client_for(player).post(f"/api/v1/campaigns/{created.json()['id']}/join", {}, format="json")
    assert joined.json()["joined"] is True and joined.json()["player_count"] == 1
    again = client_for(player).post(f"/api/v1/campaigns/{created.json()['id']}/join", {}, format="json")
    assert again.json()["joined"] is True and again.json()["player_count"] == 1  # joining is idempotent

    refused = client_for(player).post("/api/v1/campaigns", body, format="json")
    assert refused.status_code == 403


def test_campaign_of_someone_elses_dataset_is_refused(alice, charlie):
    game = campaign_make(alice)
    body = {"name": "x", "dataset": game.campaign.dataset_id, "label_classes": [game.campaign.label_classes.get().pk]}
    assert client_for(charlie).post("/api/v1/campaigns", body, format="json").status_code == 404


def test_invite_only_campaign_needs_its_code(alice, player):
    game = campaign_make(alice, visibility="invite")
    client = client_for(player)
    assert game.campaign.name not in {c["name"] for c in client.get("/api/v1/campaigns").json()["results"]}
    url = f"/api/v1/campaigns/{game.campaign.pk}/join"
    wrong = client.post(url, {"invite_code": "nope"}, format="json")
    assert wrong.status_code == 404  # the same answer as for no campaign: ids cannot be walked
    assert client.get(url.removesuffix("/join")).status_code == 404
    assert client.post(url, {"invite_code": game.campaign.invite_code}, format="json").status_code == 200


def test_a_round_needs_membership(game, player):
    response = client_for(player).post(f"/api/v1/campaigns/{game.campaign.pk}/rounds")
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_a_member"


def test_round_hands_out_distinct_unseen_images_with_everything_the_client_draws(game, player):
    client = client_for(player)
    first = join_and_start(client, game.campaign)
    assert len(first["tasks"]) == 4
    task = first["tasks"][0]
    assert set(task) == {
        "id", "position", "image", "label_class", "instructions", "initial_mask_url", "suggest_url",
        "submit_url", "submitted", "status", "points",
    }  # fmt: skip
    assert task["image"]["url"].startswith("http://testserver/media/display/")
    assert (task["image"]["width"], task["image"]["height"]) == (64, 48)
    assert task["submit_url"].endswith(f"/api/v1/rounds/{first['id']}/tasks/{task['id']}/submit")
    second = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds").json()
    assert not {t["id"] for t in first["tasks"]} & {t["id"] for t in second["tasks"]}
    assert len(second["tasks"]) == 4  # 8 images in all
    exhausted = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds")
    assert exhausted.status_code == 409 and exhausted.json()["error"]["code"] == "campaign_exhausted"


def test_images_that_need_labels_come_first(alice):
    game = campaign_make(alice, images=8, golds=0, round_size=4, annotations_per_image=1)
    players = [UserFactory() for _ in range(2)]
    first = join_and_start(client_for(players[0]), game.campaign)
    second = join_and_start(client_for(players[1]), game.campaign)
    assert not {t["id"] for t in first["tasks"]} & {t["id"] for t in second["tasks"]}


def test_full_round_settles_points_xp_badges_and_leaderboard(
    alice, player, django_capture_on_commit_callbacks, celery_in_process
):
    game = campaign_make(alice, images=4)  # both players get the same four tasks
    other = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        mine = play_round(client_for(player), game.campaign)
        play_round(client_for(other), game.campaign, draw=lambda i: square(12, 12, 40 - i, 30))
    client = client_for(player)
    summary = client.get(f"/api/v1/rounds/{mine['id']}").json()
    assert summary["completed"] and summary["settled"] and summary["submitted"] == 4
    stats = PlayerStats.objects.get(player=player)
    settled = Submission.objects.filter(player=player, status="settled")
    assert settled.count() == 4 and stats.rounds_completed == 1 and stats.tasks_submitted == 4
    assert stats.xp == sum(s.points for s in settled) > 0
    assert all(s.quality > 0.8 for s in settled)  # against the crowd's label, gold check or not
    golds = settled.filter(round_task__is_gold=True)
    assert golds and all(s.gold_quality > 0.8 for s in golds)  # measured, server-side only
    assert summary["check_accuracy"] is None  # reported over a block of rounds, never one round
    me = client.get("/api/v1/me/game").json()
    assert me["xp"] == stats.xp and {b["code"] for b in me["badges"] if b["earned_at"]} >= {"first-round"}
    board = client.get(f"/api/v1/campaigns/{game.campaign.pk}/leaderboard").json()
    assert board["me"]["points"] == stats.xp
    assert [e["pseudonym"] for e in board["top"]][board["me"]["rank"] - 1] == "brave-heron-0001"
    assert LeaderboardEntry.objects.get(board="global:all", player=player).points == stats.xp


def test_provisional_points_until_the_task_has_enough_annotations(game, player, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        data = play_round(client_for(player), game.campaign)
    summary = client_for(player).get(f"/api/v1/rounds/{data['id']}").json()
    assert {t["status"] for t in summary["tasks"]} == {"provisional"}  # only one annotator so far
    assert {t["points"] for t in summary["tasks"]} == {10}
    assert summary["check_accuracy"] is None


def test_nobody_reads_anothers_round_or_submits_to_it(game, player, charlie):
    data = join_and_start(client_for(player), game.campaign)
    task_id = data["tasks"][0]["id"]
    assert client_for(charlie).get(f"/api/v1/rounds/{data['id']}").status_code == 404
    response = submit(client_for(charlie), data["id"], task_id, submission_body(GOLD))
    assert response.status_code == 404
    assert (
        client_for(charlie).post(f"/api/v1/tasks/{task_id}/suggest", {"box": [1, 1, 9, 9]}, format="json").status_code
        == 404
    )
    assert client_for(charlie).get(f"/api/v1/tasks/{task_id}/gold").status_code == 404
    assert client_for(player).get(f"/api/v1/tasks/{task_id}/gold").status_code == 403  # researchers only


def test_unknown_round_is_404(player):
    assert client_for(player).get(f"/api/v1/rounds/{uuid.uuid4()}").status_code == 404


def test_a_campaign_can_withhold_the_suggestion(alice, player):
    game = campaign_make(alice, suggestion_withheld_share=1.0)
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    task = data["tasks"][0]
    assert task["suggest_url"] is None and task["initial_mask_url"] is None
    refused = client.post(f"/api/v1/tasks/{task['id']}/suggest", {"box": [1, 1, 9, 9]}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "suggestion_withheld"
    assert client.get(f"/api/v1/tasks/{task['id']}/embedding").status_code == 403
    assert client.get(f"/api/v1/tasks/{task['id']}/initial-mask").status_code == 403


def test_a_round_that_ran_out_is_settled_by_the_worker_after_the_next_round_starts(
    game, player, django_capture_on_commit_callbacks, monkeypatch
):
    client = client_for(player)
    first = join_and_start(client, game.campaign)
    submit(client, first["id"], first["tasks"][0]["id"], submission_body(near_gold(0)))
    Round.objects.filter(pk=first["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    handed_over = []
    monkeypatch.setattr(tasks.round_settle, "delay", lambda round_id: handed_over.append(round_id))
    with django_capture_on_commit_callbacks(execute=True):
        second = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds")
    assert second.status_code == 201
    # Not settled inside the request: handed to the worker once the new round committed.
    assert handed_over == [first["id"]] and not Round.objects.get(pk=first["id"]).settled
    monkeypatch.undo()
    tasks.round_settle(first["id"])  # what the worker runs (called in process here)
    assert Round.objects.get(pk=first["id"]).settled
    assert client.get(f"/api/v1/rounds/{first['id']}").json()["settled"]


def test_the_same_seed_draws_the_same_round(game, player):
    services.campaign_join(player=player, campaign=game.campaign)
    rounds = []
    for _ in range(2):
        game_round = services.round_start(player=player, campaign=game.campaign, seed=7)
        rounds.append([(rt.task_id, rt.is_gold, rt.suggestion_withheld) for rt in game_round.round_tasks.all()])
        game_round.delete()
    assert rounds[0] == rounds[1] and len(rounds[0]) == 4
