"""Gold checks that nothing a player gets is computed from: not the initial mask, not the points,
not which tasks a round holds; their accuracy reaches the player only over a block of rounds."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.models import FusedLabel, Task
from gamification import scoring, services
from gamification.models import CheckReport, PlayerFlag, Round, RoundTask, Submission
from inference.engine import rle
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import GOLD, campaign_make, square, submission_body
from .test_round_flow import join_and_start, submit

# Settlement follows the crowd's fused label, which a Celery task computes: run it here.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_in_process")]


def off_gold(player: int, i: int) -> np.ndarray:
    """What player ``player`` draws on their ``i``-th task: consistently off the gold (the crowd
    can be wrong), a pixel different per task (the same mask twice is flagged as pasted)."""
    return square(14 + player, 16, 46 - i, 34 + player)


def play_all(client, campaign, player: int) -> dict:
    data = join_and_start(client, campaign)
    for i, task in enumerate(data["tasks"]):
        response = submit(client, data["id"], task["id"], submission_body(off_gold(player, i)))
        assert response.status_code == 201, response.json()
    return data


def initial_mask(client, task_id) -> dict:
    response = client.get(f"/api/v1/tasks/{task_id}/initial-mask")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_gold_tasks_initial_mask_after_two_players_is_their_label_not_the_gold(
    alice, django_capture_on_commit_callbacks
):
    game = campaign_make(alice, images=4, golds=2, round_size=4, annotations_per_image=3)
    with django_capture_on_commit_callbacks(execute=True):
        for k in range(2):
            play_all(client_for(UserFactory()), game.campaign, k)
    third = client_for(UserFactory())
    data = join_and_start(third, game.campaign)
    for task in data["tasks"]:
        shown = initial_mask(third, task["id"])
        assert shown["source"] == "consensus"
        mask = rle.decode(shown["rle"])
        assert not np.array_equal(mask, GOLD)
        fused = FusedLabel.objects.get(task_id=task["id"])
        assert np.array_equal(mask, rle.decode(fused.mask))  # the crowd's label, gold task or not
    # The label of a gold task is what its votes say, as for any task: off the gold like them.
    for task_id in game.gold_task_ids:
        mask = rle.decode(FusedLabel.objects.get(task_id=task_id).mask)
        assert scoring.quality(mask, GOLD).value < 0.8


def test_points_are_scored_against_the_crowds_label_on_gold_and_ordinary_tasks_alike(
    alice, django_capture_on_commit_callbacks
):
    game = campaign_make(alice, images=4, golds=2, round_size=4, annotations_per_image=2)
    with django_capture_on_commit_callbacks(execute=True):
        for k in range(2):
            play_all(client_for(UserFactory()), game.campaign, k)
    settled = Submission.objects.filter(status="settled").select_related("annotation", "round_task")
    assert settled.count() == 8  # gold checks settle when ordinary tasks do
    for submission in settled:
        reference = rle.decode(FusedLabel.objects.get(task_id=submission.round_task.task_id).mask)
        expected = scoring.quality(rle.decode(submission.annotation.mask), reference)
        assert submission.quality == pytest.approx(expected.value)
        assert submission.points == scoring.points(expected.value, 8000, game.campaign.task_seconds * 1000)
    golds = settled.filter(round_task__is_gold=True)
    assert golds.count() == 4
    for submission in golds:  # the gold agreement is measured, server-side, and differs
        assert submission.quality > 0.8 and submission.gold_quality < 0.7


def test_handing_back_the_crowds_label_is_copying_on_gold_and_ordinary_tasks(alice, django_capture_on_commit_callbacks):
    game = campaign_make(alice, images=4, golds=2, round_size=4, annotations_per_image=3)
    with django_capture_on_commit_callbacks(execute=True):
        for k in range(2):
            play_all(client_for(UserFactory()), game.campaign, k)
    with django_capture_on_commit_callbacks(execute=True):
        cheat = UserFactory()
        client = client_for(cheat)
        data = join_and_start(client, game.campaign)
        answers = []
        for task in data["tasks"]:
            shown = initial_mask(client, task["id"])
            body = submission_body(rle.decode(shown["rle"]))
            answers.append(submit(client, data["id"], task["id"], body).json())
    assert [a["points"] for a in answers] == [0, 0, 0, 0]
    assert PlayerFlag.objects.filter(player=cheat, reason="copied").count() == 4
    mine = Submission.objects.filter(player=cheat)
    assert {s.flag for s in mine} == {"copied"}
    assert all(s.points == 0 for s in mine if s.status == "settled")


def test_a_round_is_never_all_gold(alice, player):
    game = campaign_make(alice, images=8, golds=6, round_size=4)
    client = client_for(player)
    first = join_and_start(client, game.campaign)
    assert RoundTask.objects.filter(round_id=first["id"], is_gold=False).exists()
    second = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds")
    if second.status_code == 201:  # the first round took one ordinary task, the second the other
        assert RoundTask.objects.filter(round_id=second.json()["id"], is_gold=False).exists()
        second = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds")
    # Only checks are left: no round, rather than a round of checks only.
    assert second.status_code == 409 and second.json()["error"]["code"] == "campaign_exhausted"
    for _ in range(10):
        data = join_and_start(client_for(UserFactory()), game.campaign)
        assert RoundTask.objects.filter(round_id=data["id"], is_gold=False).exists()


def test_golds_and_ordinary_tasks_are_drawn_by_one_ranking(alice, player):
    game = campaign_make(alice, images=8, golds=4, round_size=4, annotations_per_image=10)
    for task in Task.objects.filter(label_class__in=game.campaign.label_classes.all()):
        settled = task.pk in game.gold_task_ids  # the golds' labels happen to need no more votes
        mask = square(10, 10, 40, 30)
        FusedLabel.objects.create(
            task=task, mask=rle.encode(mask), area=int(mask.sum()), probability=b"", confidence=0.9,
            votes=3, gain=0.01 if settled else 0.3, settled=settled,
        )  # fmt: skip
    data = join_and_start(client_for(player), game.campaign)
    assert not RoundTask.objects.filter(round_id=data["id"], is_gold=True).exists()


def test_round_pick_follows_the_ranking_whatever_is_gold():
    def ranked(*ids):
        return [services.Candidate(task_id=i, image_id=i, assigned=0) for i in ids]

    assert services.round_pick(ranked("g1", "g2", "o1", "g3", "o2"), {"g1", "g2", "g3"}, 3) == [
        ("g1", True),
        ("g2", True),
        ("o1", False),
    ]
    # A gold would take the last place of a round with no ordinary task: it waits.
    assert services.round_pick(ranked("g1", "g2", "o1"), {"g1", "g2"}, 2) == [("g1", True), ("o1", False)]
    assert services.round_pick(ranked("g1", "g2"), {"g1", "g2"}, 4) == []  # checks only: no round
    assert services.round_pick(ranked("g1", "o1"), {"g1"}, 1) == [("o1", False)]


@pytest.mark.django_db(transaction=True)
def test_check_accuracy_is_reported_over_a_block_of_rounds_never_per_round(alice, player):
    game = campaign_make(alice, images=60, golds=40, round_size=6, annotations_per_image=1)
    client = client_for(player)
    rounds = []
    for r in range(scoring.CHECK_BLOCK_ROUNDS):
        data = join_and_start(client, game.campaign)
        for i, task in enumerate(data["tasks"]):
            submit(client, data["id"], task["id"], submission_body(square(8 + r, 10, 40 - i, 30)))
        rounds.append(data["id"])
        assert Round.objects.get(pk=data["id"]).settled
        if r < scoring.CHECK_BLOCK_ROUNDS - 1:
            assert all(client.get(f"/api/v1/rounds/{pk}").json()["check_accuracy"] is None for pk in rounds)
            assert not CheckReport.objects.exists()
    checks = Submission.objects.filter(player=player, round_task__is_gold=True)
    assert checks.count() >= scoring.CHECK_MIN_CHECKS
    assert all(s.status == "provisional" for s in checks)  # reported whether or not they settled
    mean = np.mean([s.gold_quality for s in checks])
    reported = {client.get(f"/api/v1/rounds/{pk}").json()["check_accuracy"] for pk in rounds}
    assert reported == {round(round(mean / scoring.CHECK_STEP) * scoring.CHECK_STEP, 6)}
    report = CheckReport.objects.get(player=player)
    assert report.block == 0 and report.checks == checks.count()
    # Running the report again changes nothing.
    assert services.check_reports_publish(player=player, campaign=game.campaign) == []
