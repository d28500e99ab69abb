"""Bounded input: every free field a client sends is capped, and every refusal under /api/ (a body
over the limits, a failed CSRF check, JSON nested too deep) answers in the API's error format."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotations.models import Annotation, Dataset, LabelClass
from gamification.models import Campaign, Submission
from synthesis.models import Job
from tests.conftest import client_for
from tests.gamification.conftest import GOLD, backdate, campaign_make, submission_body

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


def assert_api_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if code:
        assert error["code"] == code, error
    return error


@pytest.fixture
def playing(alice, volunteer):
    """Vera has joined Alice's campaign and holds a round: (client, round id, task id)."""
    game = campaign_make(alice)
    client = client_for(volunteer)
    assert client.post(f"/api/v1/campaigns/{game.campaign.pk}/join", {}, format="json").status_code == 200
    started = client.post(f"/api/v1/campaigns/{game.campaign.pk}/rounds")
    assert started.status_code == 201, started.content
    from gamification.models import Round

    backdate(Round.objects.get(pk=started.json()["id"]))
    return client, started.json()["id"], started.json()["tasks"][0]["id"]


def post_submission(client, round_id, task_id, body):
    return client.post(
        f"/api/v1/rounds/{round_id}/tasks/{task_id}/submit",
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )


# --- free JSON fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        {"box": [8, 8, 40, 32], "note": "x" * (8 * MB)},  # the 8 MB prompt that was stored whole
        "x" * (8 * MB),
        {"points": [[1, 1]] * 100_000, "labels": [1] * 100_000},
    ],
    ids=["extra-key", "string", "many-points"],
)
def test_it_refuses_an_oversized_prompt_and_stores_nothing(playing, prompt):
    client, round_id, task_id = playing
    r = post_submission(client, round_id, task_id, submission_body(GOLD, prompt=prompt))
    error = assert_api_error(r, 400, "invalid")
    assert "prompt" in error["fields"]
    assert len(r.content) < 4096  # the refusal does not echo the value back
    assert not Submission.objects.exists() and not Annotation.objects.exists()


def test_a_box_prompt_is_still_stored(playing):
    client, round_id, task_id = playing
    r = post_submission(client, round_id, task_id, submission_body(GOLD, prompt={"box": [8, 8, 40, 32]}))
    assert r.status_code == 201, r.content
    assert Annotation.objects.get().suggestion_prompt == {"box": [8, 8, 40, 32]}


def test_it_refuses_an_oversized_rle(playing):
    client, round_id, task_id = playing
    body = submission_body(GOLD)
    body["rle"]["counts"] = "0" * (5 * MB)
    r = post_submission(client, round_id, task_id, body)
    assert "rle" in assert_api_error(r, 400, "invalid")["fields"]
    assert not Submission.objects.exists()


def test_it_refuses_oversized_text_in_datasets_and_label_classes(alice, dataset):
    client = client_for(alice)
    r = client.post("/api/v1/datasets", {"name": "big", "description": "x" * 100_000}, format="json")
    assert "description" in assert_api_error(r, 400)["fields"]
    r = client.post(
        "/api/v1/datasets", {"name": "many", "label_classes": [f"c{i}" for i in range(5000)]}, format="json"
    )
    assert "label_classes" in assert_api_error(r, 400)["fields"]
    r = client.post(
        f"/api/v1/datasets/{dataset.pk}/label-classes", {"name": "lesion", "instructions": "x" * 100_000}, format="json"
    )
    assert "instructions" in assert_api_error(r, 400)["fields"]
    assert not Dataset.objects.filter(name__in=["big", "many"]).exists()
    assert not LabelClass.objects.filter(name="lesion").exists()


def test_it_refuses_oversized_campaign_text_and_invite_codes(alice, volunteer, dataset):
    body = {
        "name": "Find it",
        "description": "x" * 100_000,
        "dataset": dataset.pk,
        "label_classes": [dataset.label_classes.get().pk],
    }
    r = client_for(alice).post("/api/v1/campaigns", body, format="json")
    assert "description" in assert_api_error(r, 400)["fields"]
    assert not Campaign.objects.exists()
    body["description"] = ""
    campaign = client_for(alice).post("/api/v1/campaigns", body, format="json").json()
    r = client_for(volunteer).post(f"/api/v1/campaigns/{campaign['id']}/join", {"invite_code": "x" * MB}, format="json")
    assert "invite_code" in assert_api_error(r, 400)["fields"]


def test_it_refuses_oversized_job_params(alice, dataset):
    r = client_for(alice).post(
        f"/api/v1/datasets/{dataset.pk}/jobs",
        {"kind": "pix2pix", "params": {f"p{i}": i for i in range(100_000)}},
        format="json",
    )
    error = assert_api_error(r, 400)
    assert "params" in error["fields"] and len(r.content) < 4096
    assert not Job.objects.exists()


def test_a_refusal_does_not_echo_a_huge_value(alice, dataset):
    r = client_for(alice).post(f"/api/v1/datasets/{dataset.pk}/jobs", {"kind": "x" * MB}, format="json")
    error = assert_api_error(r, 400, "invalid")
    assert "kind" in error["fields"] and len(r.content) < 4096


def test_it_refuses_json_nested_too_deep(alice):
    r = client_for(alice).post("/api/v1/datasets", "[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert_api_error(r, 400, "parse_error")


# --- bodies over the limits -------------------------------------------------------------------


def test_a_json_body_over_the_limit_is_413_in_the_error_format(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = client_for(alice).post("/api/v1/datasets", {"name": "x", "description": "y" * 2000}, format="json")
    assert_api_error(r, 413, "too_large")
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("debug", [False, True])
def test_a_form_field_over_the_limit_is_413_in_the_error_format(alice, dataset, settings, debug):
    # Django itself refuses (RequestDataTooBig) while parsing: the quickstart runs with DEBUG on,
    # where Django would answer its HTML debug page.
    settings.DEBUG = debug
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = client_for(alice).post(
        f"/api/v1/datasets/{dataset.pk}/images", {"ct_window": "x" * 2000, "files": []}, format="multipart"
    )
    assert_api_error(r, 413, "too_large")


def test_an_upload_over_the_product_limit_is_413_before_the_body_is_read(alice, dataset, settings):
    settings.CROWDSEG_MAX_UPLOAD_BYTES = 1000
    client = APIClient()
    client.force_authenticate(alice)
    r = client.post(
        f"/api/v1/datasets/{dataset.pk}/images",
        b"--x\r\n" + b"y" * 2000,
        content_type="multipart/form-data; boundary=x",
    )
    error = assert_api_error(r, 413, "too_large")
    assert "1000" in error["message"]


def test_outside_the_api_django_keeps_its_own_answer(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = Client().post("/admin/login/", {"username": "x" * 2000, "password": "y"})
    assert r.status_code == 400
    assert not r["Content-Type"].startswith("application/json")


# --- CSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/datasets", "/api/v1/no-such-endpoint"])
def test_a_csrf_failure_under_the_api_answers_in_the_error_format(alice, path):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    r = browser.post(path, {"name": "x"}, content_type="application/json")
    error = assert_api_error(r, 403)
    assert "CSRF" in error["message"]
    assert not Dataset.objects.exists()


def test_a_csrf_failure_outside_the_api_keeps_djangos_page(alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    r = browser.post("/admin/logout/")
    assert r.status_code == 403
    assert r["Content-Type"].startswith("text/html")


# --- uploads name the file they refuse --------------------------------------------------------


def test_an_empty_upload_is_refused_by_its_name(alice, dataset):
    from io import BytesIO

    from annotations.models import Image
    from tests.factories import png_bytes

    good, empty = BytesIO(png_bytes()), BytesIO(b"")
    good.name, empty.name = "good.png", "empty-scan.png"
    r = client_for(alice).post(f"/api/v1/datasets/{dataset.pk}/images", {"files": [good, empty]}, format="multipart")
    error = assert_api_error(r, 400)
    assert "empty-scan.png" in error["message"] and "empty" in error["message"]
    assert "1" not in error["fields"]["files"][0].split(":")[0]  # the file, not its index
    assert not Image.objects.exists()


def test_a_30000_squared_png_is_refused_by_the_products_own_size_check(alice, dataset):
    import struct
    import zlib
    from io import BytesIO

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)
    bomb = BytesIO(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 30_001)))
    bomb.name = "huge.png"
    r = client_for(alice).post(f"/api/v1/datasets/{dataset.pk}/images", {"files": [bomb]}, format="multipart")
    message = assert_api_error(r, 400, "unreadable_image")["message"]
    assert message.startswith("huge.png: ")
    assert "30000x30000" in message and "8192" in message
    assert "decompression" not in message.lower() and "DOS attack" not in message
