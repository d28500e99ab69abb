"""schemathesis fuzzes the API in process against its own OpenAPI schema, with every check on.

As a volunteer who plays a campaign and as the researcher who runs it, each with real objects to
find (the ids in paths are the real ones), every operation is called with generated valid and
invalid input: 0 server errors, 0 answers that break the schema (status codes, content types,
bodies, headers), invalid input refused, valid input accepted. Bounded: a fixed seed and a few
examples per operation.
"""

from __future__ import annotations

import numpy as np
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient

from accounts.services import user_role_set
from annotations import services as annotation_services
from gamification import services as game_services
from inference.engine import rle
from tests.factories import PASSWORD, DatasetFactory, UserFactory, image_import
from tests.inference.conftest import medsam_model_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

EXAMPLES = 10
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]  # schemathesis' default, less 5xx
SEMANTIC_400 = r"/(submit|gold|suggest|campaigns|jobs|exports|images|accounts/guest/upgrade)$"


@pytest.fixture
def app(world, settings, medsam_model_dir):  # noqa: F811
    """The WSGI application, on this test's transaction: no connection closing between requests,
    as in Django's test client (which connects the closing again after each of its requests, so
    it is used before this fixture only)."""
    settings.CROWDSEG_MODEL_DIR = medsam_model_dir
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def session_token(username: str) -> str:
    r = APIClient().post("/_allauth/app/v1/auth/login", {"username": username, "password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    return r.json()["meta"]["session_token"]


@pytest.fixture
def world(db):
    """Alice's dataset (two images, a gold), her campaign, and Vera playing a round of it."""
    alice = user_role_set(user=UserFactory(username="alice"), role="researcher")
    dataset = DatasetFactory(owner=alice, label_classes=["lesion"])
    images = [image_import(dataset, seed=seed) for seed in range(3)]
    gold = np.zeros((images[0].height, images[0].width), bool)
    gold[10:30, 10:40] = True
    annotation_services.gold_standard_set(task=images[0].tasks.get(), mask=gold, created_by=alice)
    campaign = game_services.campaign_create(
        owner=alice, dataset=dataset, name="Find the lesion", label_classes=list(dataset.label_classes.all())
    )
    vera = UserFactory(username="vera", email="")
    game_services.campaign_join(player=vera, campaign=campaign)
    game_round = game_services.round_start(player=vera, campaign=campaign)
    task = game_round.round_tasks.order_by("position").first().task
    return {
        "tokens": {"alice": session_token("alice"), "vera": session_token("vera")},
        "ids": {
            "path.dataset_id": dataset.pk,
            "path.campaign_id": campaign.pk,
            "path.round_id": str(game_round.pk),
            "path.task_id": str(task.pk),
            "path.job_id": 1,
        },
        "mask": rle.encode(gold),
    }


def api_schema(app, world, persona: str):
    config = schemathesis.Config.from_dict(
        {
            "seed": 20261205,
            "headers": {"X-Session-Token": world["tokens"][persona]},
            "generation": {"max-examples": EXAMPLES},
            "parameters": world["ids"],
            "operations": [
                # Valid by the schema yet refused for what no schema can say: a mask's runs must
                # fill its image, a prompt's labels need points, label classes and job parameters
                # must exist, files must be images, passwords must not be common, an export's
                # selection must hold labelled images (400); an
                # Idempotency-Key names one submission (422).
                {
                    "include-path-regex": SEMANTIC_400,
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "422"]}},
                },
                # A form carries strings only: a "wrong type" (0 for false) arrives as "0", which is
                # a valid boolean there. Uploads get valid input only.
                {"include-path-regex": r"/images$", "include-method": "POST", "generation": {"mode": "positive"}},
            ],
        }
    )
    return schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", app, config=config)


@pytest.fixture
def volunteer_api(app, world):
    return api_schema(app, world, "vera")


@pytest.fixture
def researcher_api(app, world):
    return api_schema(app, world, "alice")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    # schemathesis' lazy loader reads Node._nodeid, which pytest 9 renamed; it only names subtests.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


HYPOTHESIS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schemathesis.pytest.from_fixture("volunteer_api").parametrize()
@HYPOTHESIS
def test_the_api_as_a_volunteer(case):
    case.call_and_validate()


@schemathesis.pytest.from_fixture("researcher_api").parametrize()
@HYPOTHESIS
def test_the_api_as_a_researcher(case):
    case.call_and_validate()
