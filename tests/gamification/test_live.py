"""The game over the WebSocket and with the real model: suggestions inside a round, round expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from crowdseg.asgi import application
from gamification.models import Round, Submission
from inference import services as inference_services
from inference.engine import rle
from tests.conftest import client_for
from tests.inference.conftest import medsam_model_dir  # noqa: F401 (fixture)

from .conftest import submission_body
from .test_round_flow import join_and_start, submit


@pytest.mark.django_db
def test_volunteer_asks_for_a_suggestion_edits_it_and_submits(game, player, settings, medsam_model_dir):  # noqa: F811
    settings.CROWDSEG_MODEL_DIR = medsam_model_dir
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    task = data["tasks"][0]
    from annotations.models import Task

    image = Task.objects.get(pk=task["id"]).image
    inference_services.embedding_compute(embedding_id=inference_services.embedding_request(image=image).pk)
    suggestion = client.post(task["suggest_url"], {"box": [8, 8, 40, 32]}, format="json")
    assert suggestion.status_code == 200, suggestion.json()
    mask = rle.decode(suggestion.json()["rle"])
    mask[20:24, 10:30] = True  # the volunteer's correction
    body = submission_body(mask, suggestion_use="edited", prompt={"box": [8, 8, 40, 32]})
    response = submit(client, data["id"], task["id"], body)
    assert response.status_code == 201 and response.json()["points"] == 10
    annotation = Submission.objects.get().annotation
    assert annotation.suggestion_use == "edited" and annotation.suggestion_prompt == {"box": [8, 8, 40, 32]}
    # Tasks outside the player's rounds stay closed to them.
    other = Task.objects.exclude(pk__in=[t["id"] for t in data["tasks"]]).first()
    assert client.post(f"/api/v1/tasks/{other.pk}/suggest", {"box": [8, 8, 40, 32]}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_socket_warns_before_a_round_expires(game, player):
    client = client_for(player)
    data = join_and_start(client, game.campaign)
    Round.objects.filter(pk=data["id"]).update(expires_at=timezone.now() + timedelta(seconds=61))

    async def listen():
        communicator = WebsocketCommunicator(application, "/ws/v1/play", headers=[(b"origin", b"http://localhost")])
        communicator.scope["user"] = player
        connected, _ = await communicator.connect()
        assert connected
        event = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return event

    event = async_to_sync(listen)()
    assert event["type"] == "round.expiring" and event["round"] == data["id"]
    assert 55 <= event["seconds_left"] <= 61


@pytest.mark.django_db(transaction=True)
def test_socket_refuses_anonymous_players():
    async def connect():
        communicator = WebsocketCommunicator(application, "/ws/v1/play", headers=[(b"origin", b"http://localhost")])
        connected, code = await communicator.connect()
        await communicator.disconnect()  # see tests/crowdseg/test_ws_subprotocol.py
        return connected, code

    connected, code = async_to_sync(connect)()
    assert not connected and code == 4401
