"""Gold checks the client cannot spot: same fields, same shapes, same answers, no tell anywhere."""

from __future__ import annotations

import json
import re
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from crowdseg.asgi import application
from gamification.models import RoundTask
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import campaign_make, square, submission_body
from .test_round_flow import join_and_start, submit

pytestmark = pytest.mark.django_db(transaction=True)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX_NAME = re.compile(r"/media/display/\d+/[0-9a-f]{32}\.webp$")


def shape_of(value):
    """The structure of a JSON value with every id and number replaced by its kind."""
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape_of(v) for v in value]
    if isinstance(value, str):
        return UUID.sub("<uuid>", value)
    return type(value).__name__


@pytest.fixture
def mixed_round(alice, player):
    """A round of 6 with both gold checks and ordinary tasks in it."""
    game = campaign_make(alice, images=12, golds=6, round_size=6, gold_rate=0.5)
    client = client_for(player)
    for _ in range(20):
        data = join_and_start(client, game.campaign)
        kinds = set(RoundTask.objects.filter(round_id=data["id"]).values_list("is_gold", flat=True))
        if kinds == {True, False}:
            return game, client, data
        RoundTask.objects.filter(round_id=data["id"]).delete()
    pytest.fail("no mixed round drawn")


def test_gold_and_ordinary_tasks_serialise_identically(mixed_round):
    game, client, data = mixed_round
    gold = set(map(str, RoundTask.objects.filter(round_id=data["id"], is_gold=True).values_list("task_id", flat=True)))
    shapes = {}
    for task in data["tasks"]:
        shape = shape_of({k: v for k, v in task.items() if k not in ("position", "image")})
        shapes.setdefault(task["id"] in gold, []).append(json.dumps(shape, sort_keys=True))
        assert HEX_NAME.search(task["image"]["url"])
        assert set(task["image"]) == {"url", "width", "height"}
    assert set(shapes[True]) == set(shapes[False]) and len(set(shapes[True])) == 1
    raw = json.dumps(data).lower()
    assert "gold" not in raw and "check" not in raw.replace("check_accuracy", "")


def test_submit_answers_and_live_events_are_identical_for_gold(mixed_round, celery_tasks_run):
    game, client, data = mixed_round
    player = game.campaign.members.get().player
    gold = set(map(str, RoundTask.objects.filter(round_id=data["id"], is_gold=True).values_list("task_id", flat=True)))
    answers = {}

    def play_and_let_a_second_player_finish_the_same_tasks():
        for i, task in enumerate(data["tasks"]):
            response = submit(client, data["id"], task["id"], submission_body(square(10, 10, 40 - i, 30)))
            answers[task["id"]] = response.json()
        # Every task then reaches its target of 2 annotations and settles.
        other = UserFactory()
        other_round = join_and_start(client_for(other), game.campaign)
        RoundTask.objects.filter(round_id=other_round["id"]).delete()
        for i, task in enumerate(data["tasks"]):
            RoundTask.objects.create(
                round_id=other_round["id"], task_id=task["id"], position=i, is_gold=task["id"] in gold
            )
        for i, task in enumerate(data["tasks"]):
            submit(client_for(other), other_round["id"], task["id"], submission_body(square(11, 10, 40 - i, 31)))

    async def play():
        communicator = WebsocketCommunicator(application, "/ws/v1/play", headers=[(b"origin", b"http://localhost")])
        communicator.scope["user"] = player
        connected, _ = await communicator.connect()
        assert connected
        await sync_to_async(play_and_let_a_second_player_finish_the_same_tasks)()
        events, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline and sum(e["type"] == "score.settled" for e in events) < len(data["tasks"]):
            if not await communicator.receive_nothing(timeout=0.2):
                events.append(await communicator.receive_json_from())
        while not await communicator.receive_nothing(timeout=0.5):  # what follows the last settlement
            events.append(await communicator.receive_json_from())
        await communicator.disconnect()
        return events

    events = async_to_sync(play)()
    by_gold = {True: set(), False: set()}
    for task_id, body in answers.items():
        by_gold[task_id in gold].add(json.dumps(shape_of({**body, "submission": 0}), sort_keys=True))
        assert body["points"] == 10 and body["status"] == "provisional"
    assert by_gold[True] == by_gold[False]
    settled = [e for e in events if e["type"] == "score.settled"]
    assert {e["task"] for e in settled} == {t["id"] for t in data["tasks"]}
    assert len({json.dumps(shape_of(e), sort_keys=True) for e in settled}) == 1
    assert {"round.completed", "round.settled", "badge.earned", "leaderboard.changed"} <= {e["type"] for e in events}
    assert "gold" not in json.dumps(events).lower()
