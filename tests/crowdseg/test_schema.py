"""The OpenAPI schema says what the API does: its 4xx answers, its one-of bodies, its parameters."""

from __future__ import annotations

import pytest

from tests.conftest import client_for
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(alice) -> dict:
    r = client_for(alice).get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    return r.json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_operation_documents_its_4xx_answers_in_the_error_format(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"][error["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
    assert set(detail["required"]) == {"status", "code", "message"}
    count = 0
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        expected = {"400", "403", "4XX"} | ({"404"} if "{" in path else set())
        assert expected <= set(responses), (method, path, sorted(responses))
        for code, response in responses.items():
            if code.startswith("4"):
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        count += 1
    assert count > 25
    assert "429" in schema["paths"]["/api/v1/tasks/{task_id}/suggest"]["post"]["responses"]


@pytest.mark.parametrize("component", ["SubmissionRequest", "MaskInputRequest"])
def test_a_mask_body_requires_exactly_one_of_rle_or_polygons(schema, component):
    body = schema["components"]["schemas"][component]
    assert body["oneOf"] == [{"required": ["rle"]}, {"required": ["polygons"]}]
    assert {"rle", "polygons"} <= set(body["properties"])


def test_request_bodies_are_json(schema):
    for path, _method, operation in operations(schema):
        if "requestBody" in operation and not path.endswith("/images"):
            assert set(operation["requestBody"]["content"]) == {"application/json"}, path


@pytest.mark.parametrize("value", ["null", "0", "-3", "ten", "1.5", ""])
def test_page_size_must_be_a_positive_integer(alice, value):
    r = client_for(alice).get(f"/api/v1/datasets?page_size={value}")
    assert r.status_code == 400, r.content
    assert "page_size" in r.json()["error"]["fields"]


def test_page_size_is_documented_as_a_positive_integer(schema):
    [parameter] = [p for p in schema["paths"]["/api/v1/datasets"]["get"]["parameters"] if p["name"] == "page_size"]
    assert parameter["schema"]["type"] == "integer" and parameter["schema"]["minimum"] == 1


def test_a_user_without_an_email_address_gets_null_not_an_empty_string(schema):
    pupil = UserFactory(email="", role="pupil")
    assert client_for(pupil).get("/api/v1/accounts/me").json()["email"] is None
    email = schema["components"]["schemas"]["User"]["properties"]["email"]
    assert email["format"] == "email" and email["nullable"] is True
    with_email = UserFactory(email="vera@example.org")
    assert client_for(with_email).get("/api/v1/accounts/me").json()["email"] == "vera@example.org"


def test_page_size_still_caps_large_values(alice):
    for _ in range(3):
        DatasetFactory(owner=alice, label_classes=[])
    assert len(client_for(alice).get("/api/v1/datasets?page_size=2").json()["results"]) == 2
    assert len(client_for(alice).get("/api/v1/datasets?page_size=100000").json()["results"]) == 3
