"""A small campaign to play: 8 images of one dataset, 3 with gold standards, two annotators per image."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest

from accounts.models import User
from annotations import services as annotation_services
from gamification import services
from gamification.models import Campaign
from inference.engine import rle
from tests.factories import DatasetFactory, UserFactory, image_import

HEIGHT, WIDTH = 48, 64


def square(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y0:y1, x0:x1] = True
    return mask


GOLD = square(10, 10, 40, 30)


@dataclass
class Game:
    campaign: Campaign
    gold_task_ids: set


def campaign_make(owner: User, *, images: int = 8, golds: int = 3, **rules) -> Game:
    dataset = DatasetFactory(owner=owner, label_classes=["lesion"])
    for seed in range(images):
        image_import(dataset, height=HEIGHT, width=WIDTH, seed=seed)
    tasks = list(dataset.label_classes.get().tasks.order_by("image__source_name"))
    for task in tasks[:golds]:
        annotation_services.gold_standard_set(task=task, mask=GOLD, created_by=owner)
    rules = {"round_size": 4, "annotations_per_image": 2, "gold_rate": 0.25, **rules}
    campaign = services.campaign_create(
        owner=owner,
        dataset=dataset,
        name=f"campaign of {dataset.name}",
        label_classes=[dataset.label_classes.get()],
        **rules,
    )
    return Game(campaign, {t.id for t in tasks[:golds]})


@pytest.fixture
def game(alice) -> Game:
    return campaign_make(alice)


@pytest.fixture
def player(db) -> User:
    return UserFactory(username="pat", pseudonym="brave-heron-0001")


def submission_body(mask: np.ndarray, *, time_spent_ms: int = 8000, **extra) -> dict:
    return {"rle": rle.encode(mask), "time_spent_ms": time_spent_ms, "suggestion_use": "none", **extra}


def backdate(game_round, seconds: int = 600) -> None:
    """Pretend the round started ``seconds`` ago, so reported drawing times are plausible."""
    game_round.created_at -= timedelta(seconds=seconds)
    game_round.save(update_fields=["created_at"])


# -- classrooms --------------------------------------------------------------------------------


@pytest.fixture
def tom(db) -> User:
    """A teacher."""
    return UserFactory(username="tom", role="teacher")


@pytest.fixture
def biology(tom):
    """Tom's class."""
    from gamification import classroom_services

    return classroom_services.classroom_create(teacher=tom, name="Year 9 Biology")


def roster(classroom, *names: str) -> list:
    """New pupils in ``classroom``: [(membership, password)]."""
    from gamification import classroom_services

    return classroom_services.roster_add(classroom=classroom, names=list(names))


def play(pupil: User, campaign: Campaign, key: str = "pupil-key-0001") -> int:
    """The pupil plays one task of ``campaign`` (8 s of drawing); returns the annotation's id."""
    from annotations.models import Annotation

    services.campaign_join(player=pupil, campaign=campaign)
    game_round = services.round_start(player=pupil, campaign=campaign)
    backdate(game_round)
    outcome = services.submission_submit(
        player=pupil,
        round_id=game_round.id,
        task_id=game_round.round_tasks.first().task_id,
        data=submission_body(square(5, 5, 30, 30)),
        idempotency_key=key,
    )
    assert outcome.status == 201
    return Annotation.objects.filter(annotator=pupil).latest("created_at").pk
