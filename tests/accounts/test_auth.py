"""Accounts through allauth headless (apps and browsers), guest play and its upgrade."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User
from tests.conftest import child_process_env
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_app_client_logs_in_and_uses_session_token_on_our_api():
    UserFactory(username="alice")
    client = APIClient()
    r = client.post("/_allauth/app/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    token = r.json()["meta"]["session_token"]
    assert r.json()["data"]["user"]["role"] == "volunteer"

    app = APIClient()  # no cookies: only the header authenticates
    r = app.get("/api/v1/accounts/me", HTTP_X_SESSION_TOKEN=token)
    assert r.status_code == 200
    assert r.json()["username"] == "alice"


def test_browser_client_logs_in_with_a_cookie():
    UserFactory(username="alice")
    client = APIClient(enforce_csrf_checks=True)
    client.get("/_allauth/browser/v1/config")
    csrf = client.cookies.get("csrftoken")
    headers = {"HTTP_X_CSRFTOKEN": csrf.value} if csrf else {}
    r = client.post(
        "/_allauth/browser/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json", **headers
    )
    assert r.status_code == 200, r.content
    assert "session_token" not in r.json().get("meta", {})
    assert client.get("/api/v1/accounts/me").json()["username"] == "alice"


def test_it_refuses_a_wrong_session_token():
    r = APIClient().get("/api/v1/accounts/me", HTTP_X_SESSION_TOKEN="not-a-session")
    assert r.status_code in (401, 403)
    assert r.json()["error"]["status"] == r.status_code


def test_signup_without_email_makes_a_volunteer():
    r = APIClient().post(
        "/_allauth/app/v1/auth/signup", {"username": "pupil7", "password": "a-long-enough-pass-42"}, format="json"
    )
    assert r.status_code == 200, r.content
    user = User.objects.get(username="pupil7")
    assert user.email == "" and user.role == Role.VOLUNTEER and user.pseudonym


def test_failed_logins_are_rate_limited():
    UserFactory(username="alice")
    client = APIClient()
    bodies = [
        client.post("/_allauth/app/v1/auth/login", {"username": "alice", "password": "wrong"}, format="json").json()
        for _ in range(6)
    ]
    codes = [[e["code"] for e in body["errors"]] for body in bodies]
    assert "too_many_login_attempts" not in codes[4]
    assert "too_many_login_attempts" in codes[5]  # 5 failures per account per 5 minutes
    r = client.post("/_allauth/app/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert r.status_code == 400  # even the right password waits out the limit


def test_guest_app_client_plays_then_upgrades_keeping_its_row():
    r = APIClient().post("/api/v1/accounts/guest", {"client": "app"}, format="json")
    assert r.status_code == 201, r.content
    token, guest_id = r.json()["session_token"], r.json()["user"]["id"]
    assert r.json()["user"]["is_guest"] is True

    app = APIClient()
    r = app.post(
        "/api/v1/accounts/guest/upgrade",
        {"username": "newplayer", "password": "a-long-enough-pass-42"},
        format="json",
        HTTP_X_SESSION_TOKEN=token,
    )
    assert r.status_code == 200, r.content
    user = User.objects.get(pk=guest_id)
    assert user.username == "newplayer" and not user.is_guest and user.check_password("a-long-enough-pass-42")

    login = APIClient().post(
        "/_allauth/app/v1/auth/login", {"username": "newplayer", "password": "a-long-enough-pass-42"}, format="json"
    )
    assert login.status_code == 200


def test_guest_browser_client_gets_a_cookie_not_a_token():
    client = APIClient()
    r = client.post("/api/v1/accounts/guest", {}, format="json")
    assert r.status_code == 201
    assert "session_token" not in r.json()
    assert client.get("/api/v1/accounts/me").json()["is_guest"] is True


def test_it_rejects_upgrade_to_a_taken_username_and_changes_nothing():
    UserFactory(username="taken")
    client = APIClient()
    client.post("/api/v1/accounts/guest", {}, format="json")
    before = client.get("/api/v1/accounts/me").json()
    r = client.post(
        "/api/v1/accounts/guest/upgrade", {"username": "taken", "password": "a-long-enough-pass-42"}, format="json"
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "username_taken"
    assert client.get("/api/v1/accounts/me").json() == before


def test_it_rejects_a_weak_password_on_upgrade():
    client = APIClient()
    client.post("/api/v1/accounts/guest", {}, format="json")
    r = client.post("/api/v1/accounts/guest/upgrade", {"username": "someone", "password": "12345678"}, format="json")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "weak_password"
    assert User.objects.get(pk=client.get("/api/v1/accounts/me").json()["id"]).is_guest


def test_a_full_account_cannot_upgrade(volunteer):
    client = APIClient()
    client.force_authenticate(volunteer)
    r = client.post(
        "/api/v1/accounts/guest/upgrade", {"username": "x" * 5, "password": "a-long-enough-pass-42"}, format="json"
    )
    assert r.status_code == 403


@pytest.mark.real_stack
@pytest.mark.django_db(transaction=True)
def test_rate_limits_hold_across_processes():
    """Failed logins in another process count here: the limit lives in Redis, not in memory."""
    UserFactory(username="alice")
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "c = Client()\n"
        "codes = [c.post('/_allauth/app/v1/auth/login', {'username': 'alice', 'password': 'wrong'},"
        " content_type='application/json', HTTP_HOST='localhost').status_code for _ in range(5)]\n"
        "print(codes)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=child_process_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[400, 400, 400, 400, 400]"
    r = APIClient().post(
        "/_allauth/app/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json", HTTP_HOST="localhost"
    )
    assert r.status_code == 400
    assert "too_many_login_attempts" in [e["code"] for e in r.json()["errors"]]
