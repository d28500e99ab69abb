"""Display images of medical data go only to people who may see them (``crowdseg.media``).

A player sees the images of the tasks in their rounds, a researcher those of their datasets, a
superuser all; everyone else gets the 404 of a file that does not exist.
"""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotations.models import Image
from gamification import services as game_services
from tests.factories import PASSWORD, DatasetFactory, UserFactory, image_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(dataset) -> Image:
    return image_import(dataset, seed=5)


@pytest.fixture
def player(image, alice):
    """Pat holds a round with the image's task in it."""
    campaign = game_services.campaign_create(
        owner=alice, dataset=image.dataset, name="c", label_classes=list(image.dataset.label_classes.all())
    )
    pat = UserFactory(username="pat")
    game_services.campaign_join(player=pat, campaign=campaign)
    game_round = game_services.round_start(player=pat, campaign=campaign)
    assert game_round.round_tasks.filter(task__image=image).exists()
    return pat


def media_path(image: Image) -> str:
    return image.display.url


def browser(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_anonymous_visitors_get_404(image):
    r = browser().get(media_path(image))
    assert r.status_code == 404
    assert not r.has_header("X-Accel-Redirect")


def test_people_without_access_get_404_as_for_a_missing_file(image, charlie, volunteer):
    missing = media_path(image).replace(".webp", "0.webp")
    for user in (charlie, volunteer):
        assert browser(user).get(media_path(image)).status_code == 404
        assert browser(user).get(missing).status_code == 404
    assert browser(charlie).get("/media/../crowdseg/settings/base.py").status_code == 404


def test_a_player_sees_the_images_of_their_rounds_with_private_caching(image, player):
    r = browser(player).get(media_path(image))
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == image.display.open("rb").read()
    assert r["Content-Type"] == "image/webp"
    cache = r["Cache-Control"]
    assert "private" in cache and "max-age=" in cache and "public" not in cache


def test_an_app_client_authenticates_with_its_session_token(image, player):
    login = APIClient().post("/_allauth/app/v1/auth/login", {"username": "pat", "password": PASSWORD}, format="json")
    token = login.json()["meta"]["session_token"]
    assert APIClient().get(media_path(image), HTTP_X_SESSION_TOKEN=token).status_code == 200
    assert APIClient().get(media_path(image), HTTP_X_SESSION_TOKEN="not-a-session").status_code == 404


def test_the_round_hands_out_image_urls_the_player_can_load(image, player):
    client = browser(player)
    game_round = player.rounds.get()
    data = client.get(f"/api/v1/rounds/{game_round.pk}").json()
    urls = {task["image"]["url"] for task in data["tasks"]}
    assert urls
    for url in urls:
        assert client.get(url).status_code == 200
    assert browser().get(next(iter(urls))).status_code == 404


def test_researchers_see_their_datasets_images_and_superusers_all(image, alice):
    assert browser(alice).get(media_path(image)).status_code == 200
    root = UserFactory(is_staff=True, is_superuser=True)
    assert browser(root).get(media_path(image)).status_code == 200
    listed = APIClient()
    listed.force_authenticate(alice)
    [item] = listed.get(f"/api/v1/datasets/{image.dataset_id}/images").json()["results"]
    assert browser(alice).get(item["display_url"]).status_code == 200


def test_another_researchers_image_stays_hidden(alice, charlie):
    theirs = image_import(DatasetFactory(owner=charlie), seed=1)
    assert browser(alice).get(media_path(theirs)).status_code == 404
    assert browser(charlie).get(media_path(theirs)).status_code == 200


def test_behind_nginx_the_file_is_handed_to_the_web_server(image, alice, settings):
    settings.CROWDSEG_MEDIA_SENDFILE = "x-accel-redirect"
    r = browser(alice).get(media_path(image))
    assert r.status_code == 200
    assert r["X-Accel-Redirect"] == "/internal-media/" + image.display.name
    assert r.content == b""
    assert "private" in r["Cache-Control"]
    assert browser().get(media_path(image)).status_code == 404
