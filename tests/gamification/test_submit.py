"""Submissions: idempotency, bad input, anti-cheat, late and offline submissions."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection

from annotations.models import Annotation
from gamification import services
from gamification.models import PlayerFlag, PlayerStats, Round, Submission
from inference.engine import rle
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import GOLD, square, submission_body
from .test_round_flow import join_and_start, submit

pytestmark = pytest.mark.django_db


def put_on_task(round_id, task_id) -> None:
    """Make sure the round holds ``task_id`` (swapping out its first task if needed)."""
    game_round = Round.objects.get(pk=round_id)
    if not game_round.round_tasks.filter(task_id=task_id).exists():
        round_task = game_round.round_tasks.first()
        round_task.task_id = uuid.UUID(str(task_id))
        round_task.save()


@pytest.fixture
def started(game, player):
    client = client_for(player)
    return client, join_and_start(client, game.campaign)


def test_retry_with_the_same_key_returns_the_first_response_exactly(started):
    client, data = started
    task = data["tasks"][0]["id"]
    first = submit(client, data["id"], task, submission_body(GOLD), key="retry-key-0001")
    again = submit(client, data["id"], task, submission_body(GOLD), key="retry-key-0001")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Submission.objects.count() == Annotation.objects.count() == 1


def test_same_key_different_body_is_422_and_changes_nothing(started):
    client, data = started
    task = data["tasks"][0]["id"]
    submit(client, data["id"], task, submission_body(GOLD), key="retry-key-0002")
    other = submit(client, data["id"], task, submission_body(square(0, 0, 5, 5)), key="retry-key-0002")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert rle.decode(Annotation.objects.get().mask).sum() == GOLD.sum()


def test_missing_or_malformed_key_is_400(started):
    client, data = started
    url = f"/api/v1/rounds/{data['id']}/tasks/{data['tasks'][0]['id']}/submit"
    missing = client.post(url, submission_body(GOLD), format="json")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "idempotency_key_missing"
    bad = client.post(url, submission_body(GOLD), format="json", HTTP_IDEMPOTENCY_KEY="no spaces please")
    assert bad.status_code == 400 and Submission.objects.count() == 0


def test_a_second_submission_for_the_same_task_is_409(started):
    client, data = started
    task = data["tasks"][0]["id"]
    assert submit(client, data["id"], task, submission_body(GOLD)).status_code == 201
    again = submit(client, data["id"], task, submission_body(square(5, 5, 20, 20)))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_submitted"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"rle": {"size": [10, 10], "counts": "0"}, "time_spent_ms": 5000}, "invalid_mask"),  # wrong size
        ({"rle": {"size": [48, 64], "counts": "%%%"}, "time_spent_ms": 5000}, "invalid_mask"),  # malformed RLE
        ({"rle": {"size": [48, 64], "counts": [10, 5]}, "time_spent_ms": 5000}, "invalid_mask"),  # too short
        ({"polygons": [[1, 1, 2]], "time_spent_ms": 5000}, "invalid"),  # not a polygon
        ({"time_spent_ms": 5000}, "invalid"),  # no mask
        ({"rle": rle.encode(GOLD), "time_spent_ms": -1}, "invalid"),
        ({"rle": rle.encode(GOLD), "time_spent_ms": 5000, "suggestion_use": "stolen"}, "invalid"),
    ],
)
def test_bad_submissions_are_400_and_store_nothing(started, body, code):
    client, data = started
    response = submit(client, data["id"], data["tasks"][0]["id"], body)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code
    assert Submission.objects.count() == Annotation.objects.count() == 0


def test_polygon_masks_are_accepted(started):
    client, data = started
    body = {"polygons": [[10, 10, 40, 10, 40, 30, 10, 30]], "time_spent_ms": 5000}
    assert submit(client, data["id"], data["tasks"][0]["id"], body).status_code == 201
    assert Annotation.objects.get().area > 500


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_identical_submits_execute_once(game, player):
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    task = data["tasks"][0]["id"]
    body, results, barrier = submission_body(GOLD), [], threading.Barrier(20)

    def send():
        barrier.wait()
        try:
            response = submit(client_for(player), data["id"], task, body, key="same-key-concurrent")
            results.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    assert {status for status, _ in results} == {201}
    assert all(body == results[0][1] for _, body in results)
    assert Submission.objects.count() == Annotation.objects.count() == 1
    assert PlayerStats.objects.get(player=player).tasks_submitted == 1


def test_too_fast_submissions_earn_nothing_and_flag(game, player):
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    response = submit(client, data["id"], data["tasks"][0]["id"], submission_body(GOLD, time_spent_ms=300))
    assert response.status_code == 201 and response.json()["points"] == 0
    assert Submission.objects.get().flag == "too_fast"
    assert PlayerFlag.objects.get().reason == "too_fast"


def test_claiming_more_time_than_has_passed_is_too_fast(game, player):
    client = client_for(player)
    assert client.post(f"/api/v1/campaigns/{game.campaign.pk}/join", {}, format="json").status_code == 200
    data = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds").json()  # started just now
    response = submit(client, data["id"], data["tasks"][0]["id"], submission_body(GOLD, time_spent_ms=60_000))
    assert response.json()["points"] == 0 and Submission.objects.get().flag == "too_fast"


def test_blank_copied_and_pasted_masks_are_flagged(game, player):
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    tasks = [t["id"] for t in data["tasks"]]
    blank = submit(client, data["id"], tasks[0], submission_body(square(0, 0, 0, 0)))
    assert blank.json()["points"] == 0
    submit(client, data["id"], tasks[1], submission_body(square(3, 3, 20, 20)))
    submit(client, data["id"], tasks[2], submission_body(square(3, 3, 20, 20)))  # pasted again
    flags = dict(Submission.objects.values_list("round_task__task_id", "flag"))
    assert [flags[uuid.UUID(t)] for t in tasks[:3]] == ["blank", "", "repeated"]

    copier = UserFactory()
    copier_client = client_for(copier)
    their = join_and_start(copier_client, game.campaign)
    put_on_task(their["id"], tasks[1])  # then paste the player's exact mask
    copied = submit(copier_client, their["id"], tasks[1], submission_body(square(3, 3, 20, 20)))
    assert copied.json()["points"] == 0
    assert Submission.objects.get(player=copier).flag == "copied"


def test_identical_accepted_suggestions_are_not_copying(game, player):
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    task = data["tasks"][0]["id"]
    submit(client, data["id"], task, submission_body(GOLD, suggestion_use="accepted"))
    other = UserFactory()
    their = join_and_start(client_for(other), game.campaign)
    put_on_task(their["id"], task)
    submit(client_for(other), their["id"], task, submission_body(GOLD, suggestion_use="accepted"))
    assert Submission.objects.get(player=other).flag == ""


def test_persistent_cheats_are_marked_suspicious(alice, player):
    from .conftest import campaign_make

    game = campaign_make(alice, images=12, round_size=12)
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    for task in data["tasks"][:6]:
        submit(client, data["id"], task["id"], submission_body(GOLD, time_spent_ms=100))
    assert PlayerStats.objects.get(player=player).suspicious


def test_late_submissions_are_kept_but_earn_nothing(game, player):
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    Round.objects.filter(pk=data["id"]).update(
        expires_at=Round.objects.get(pk=data["id"]).created_at + timedelta(seconds=1)
    )
    response = submit(client, data["id"], data["tasks"][0]["id"], submission_body(GOLD))
    assert response.status_code == 201
    assert response.json()["on_time"] is False and response.json()["points"] == 0
    assert Annotation.objects.count() == 1 and Submission.objects.get().flag == "late"


def test_offline_batch_submits_each_item_once(game, player):
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    items = [
        {
            "round": data["id"],
            "task": t["id"],
            "idempotency_key": f"offline-{i:04d}",
            **submission_body(square(2, 2, 10 + i, 20)),
        }
        for i, t in enumerate(data["tasks"])
    ]
    items.append({"round": data["id"], "task": data["tasks"][0]["id"], "idempotency_key": "x", "time_spent_ms": 1})
    first = client.post("/api/v1/submissions/batch", {"submissions": items}, format="json")
    assert first.status_code == 200
    statuses = [r["status"] for r in first.json()["results"]]
    assert statuses == [201, 201, 201, 201, 400]
    again = client.post("/api/v1/submissions/batch", {"submissions": items[:4]}, format="json").json()["results"]
    assert [r["replayed"] for r in again] == [True] * 4
    assert [r["body"] for r in again] == [r["body"] for r in first.json()["results"][:4]]
    assert Submission.objects.count() == 4
    assert Round.objects.get(pk=data["id"]).completed_at is not None


def test_batch_rejects_a_malformed_envelope(player):
    response = client_for(player).post("/api/v1/submissions/batch", {"submissions": "nope"}, format="json")
    assert response.status_code == 400


def test_service_refuses_unknown_round_task(game, player):
    from crowdseg.errors import NotFound

    with pytest.raises(NotFound):
        services.submission_submit(
            player=player,
            round_id=uuid.uuid4(),
            task_id=uuid.uuid4(),
            data=submission_body(GOLD),
            idempotency_key="k" * 10,
        )
