"""One error format, capped pagination, the schema and its docs served without a CDN."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import REAL_STACK, client_for
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def test_unauthenticated_requests_get_the_error_format():
    r = APIClient().get("/api/v1/datasets")
    assert r.status_code in (401, 403)
    assert set(r.json()["error"]) >= {"status", "code", "message"}


def test_unknown_api_path_answers_json_404():
    r = APIClient().get("/api/v1/no-such-thing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_validation_errors_name_the_field(alice):
    r = client_for(alice).post("/api/v1/datasets", {"name": ""}, format="json")
    assert r.status_code == 400
    body = r.json()["error"]
    assert body["code"] == "invalid" and "name" in body["fields"]


def test_page_size_is_capped(alice, monkeypatch):
    from crowdseg.api import CappedPagination

    monkeypatch.setattr(CappedPagination, "max_page_size", 2)  # the cap, small enough to observe
    for _ in range(3):
        DatasetFactory(owner=alice, label_classes=[])
    r = client_for(alice).get("/api/v1/datasets?page_size=100000")
    assert r.status_code == 200
    assert r.json()["count"] == 3
    assert len(r.json()["results"]) == 2 and r.json()["next"]


def test_schema_and_docs_are_served_locally(alice):
    client = client_for(alice)
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "//unpkg" not in html


def test_liveness_needs_no_login():
    assert APIClient().get("/healthz").json() == {"ok": True}


@pytest.mark.skipif(REAL_STACK, reason="the real stack has its own health test, with a worker")
def test_health_reports_every_part_of_the_embedded_stack(db):
    from tests.factories import UserFactory

    staff = UserFactory(is_staff=True, role="staff")
    r = client_for(staff).get("/api/v1/health")
    assert r.status_code == 200, r.content
    checks = r.json()["checks"]
    assert all(c["ok"] for c in checks.values())


def test_health_is_for_staff_only(volunteer, alice):
    assert client_for(volunteer).get("/api/v1/health").status_code == 403
    from accounts.services import user_role_set

    user_role_set(user=alice, role="researcher")
    assert alice.is_staff  # researchers enter the admin, yet they are not operators
    assert client_for(alice).get("/api/v1/health").status_code == 403


@pytest.mark.real_stack
@pytest.mark.django_db(transaction=True)
def test_health_roundtrips_a_task_through_a_real_worker(celery_worker_process):
    from tests.factories import UserFactory

    staff = UserFactory(is_staff=True, role="staff")
    r = client_for(staff).get("/api/v1/health")
    checks = r.json()["checks"]
    assert r.status_code == 200, checks
    assert checks["celery"]["detail"] == "worker"
    assert checks["database"]["detail"] == "postgresql"
    assert checks["channel_layer"]["detail"] == "RedisChannelLayer"
    assert checks["cache"]["detail"] == "RedisCache"
