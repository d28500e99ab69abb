"""The game and the fusion engine: active sampling, settlement against the fused label, anchoring."""

from __future__ import annotations

import random

import pytest

from annotations.models import FusedLabel, Task
from gamification import selectors, services
from gamification.models import RoundTask, Submission
from inference.engine import rle
from tests.conftest import client_for, eventually
from tests.factories import UserFactory

from .conftest import campaign_make, square, submission_body
from .test_round_flow import join_and_start, submit

pytestmark = pytest.mark.django_db


def fused(task, *, gain: float, settled: bool, votes: int = 3) -> FusedLabel:
    mask = square(10, 10, 40, 30)
    return FusedLabel.objects.create(
        task=task, mask=rle.encode(mask), area=int(mask.sum()), probability=b"", confidence=1 - gain,
        votes=votes, gain=gain, settled=settled,
    )  # fmt: skip


def test_rounds_prefer_uncertain_images_and_skip_settled_ones(alice):
    game = campaign_make(alice, images=8, golds=0, round_size=3, annotations_per_image=10)
    tasks = list(Task.objects.filter(label_class__in=game.campaign.label_classes.all()).order_by("image__source_name"))
    for task in tasks[:3]:
        fused(task, gain=0.01, settled=True)
    for task in tasks[3:6]:
        fused(task, gain=0.3, settled=False)
    fused(tasks[6], gain=0.05, settled=False)
    # tasks[7] was never annotated: it comes first
    data = join_and_start(client_for(UserFactory()), game.campaign)
    handed = {t["id"] for t in data["tasks"]}
    assert str(tasks[7].id) in handed
    assert handed <= {str(t.id) for t in tasks[3:6]} | {str(tasks[7].id)}


def test_ranker_puts_settled_images_last():
    from gamification.models import Campaign

    candidates = [
        services.Candidate(task_id=i, image_id=i, assigned=a, gain=g, settled=s)
        for i, (a, g, s) in enumerate([(1, 0.9, True), (2, 0.2, False), (0, 1.0, False), (2, 0.4, False)])
    ]
    ranked = services.rank_by_need(Campaign(annotations_per_image=5), candidates, random.Random(0))
    assert [c.task_id for c in ranked] == [2, 3, 1, 0]


@pytest.mark.django_db(transaction=True)
def test_ordinary_tasks_settle_against_the_fused_label(alice, celery_tasks_run):
    game = campaign_make(alice, images=4, golds=0, round_size=4, annotations_per_image=3)
    players = UserFactory.create_batch(3)
    for k, player in enumerate(players):
        client = client_for(player)
        data = join_and_start(client, game.campaign)
        for i, task in enumerate(data["tasks"]):
            submit(client, data["id"], task["id"], submission_body(square(10 + k, 10, 40 - i, 30)))
    assert eventually(lambda: Submission.objects.filter(status="settled").count() == 12)
    assert FusedLabel.objects.filter(annotation_count=3).count() == 4
    assert all(s.quality > 0.8 for s in Submission.objects.all())


@pytest.mark.django_db(transaction=True)
def test_anchoring_effect_compares_with_and_without_the_suggestion(alice, celery_tasks_run):
    game = campaign_make(alice, images=7, golds=6, round_size=7, annotations_per_image=1, gold_rate=0.5)
    player = UserFactory()
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    checks = RoundTask.objects.filter(round_id=data["id"], is_gold=True)
    withheld = set(list(checks.values_list("task_id", flat=True))[:3])
    RoundTask.objects.filter(round_id=data["id"], task_id__in=withheld).update(suggestion_withheld=True)
    for i, task in enumerate(data["tasks"]):
        off = 0 if task["id"] in {str(t) for t in withheld} else 8  # worse with the suggestion
        use = "none" if off == 0 else "accepted"
        body = submission_body(square(10, 10, 40 + off - i % 2, 30), suggestion_use=use)
        submit(client, data["id"], task["id"], body)
    # Measured against the golds once the round is over, whether or not the tasks settled.
    assert eventually(lambda: Submission.objects.filter(gold_dice__isnull=False).count() == 6)
    effect = selectors.anchoring_effect(campaign=game.campaign)
    assert effect["with_n"] == effect["without_n"] == 3
    assert effect["without_mean"] > effect["with_mean"]
    assert effect["accepted_unchanged_share"] == 1.0


@pytest.mark.django_db(transaction=True)
def test_fuse_now_from_the_admin_and_the_command(alice, celery_tasks_run):
    import io

    from django.core.management import call_command
    from django.test import Client

    from accounts.services import user_role_set

    game = campaign_make(alice, images=4, golds=0, round_size=4, annotations_per_image=5)
    for k, player in enumerate(UserFactory.create_batch(2)):
        client = client_for(player)
        data = join_and_start(client, game.campaign)
        for i, task in enumerate(data["tasks"]):
            submit(client, data["id"], task["id"], submission_body(square(10 + k, 10, 40 - i, 30)))
    FusedLabel.objects.all().delete()
    user_role_set(user=alice, role="researcher")
    admin = Client()
    admin.force_login(alice)
    response = admin.post(
        "/admin/gamification/campaign/", {"action": "fuse_now", "_selected_action": [game.campaign.pk]}
    )
    assert response.status_code == 302
    assert eventually(lambda: FusedLabel.objects.count() == 4)
    out = io.StringIO()
    call_command("fuse", "--campaign", str(game.campaign.pk), stdout=out, stderr=io.StringIO())
    assert "4 images, 2 annotators" in out.getvalue() and "anchoring on gold checks" in out.getvalue()
