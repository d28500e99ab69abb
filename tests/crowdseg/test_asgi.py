"""The ASGI entry point: HTTP runs its middleware and view in one thread hop; the startup heap is
frozen out of the garbage collector's full passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from channels.testing import HttpCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.core.handlers.asgi import ASGIHandler

from crowdseg.asgi import application
from crowdseg.http_handler import SyncChainHandler
from tests.factories import UserFactory


def session_token(user) -> str:
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def serve(app, method: str, path: str, headers: list[tuple[bytes, bytes]], monkeypatch) -> tuple[dict, int]:
    """One request through ``app``; returns the response and the number of hops from the event
    loop to a synchronous thread it took."""
    hops = 0
    hop = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        nonlocal hops
        hops += 1
        return await hop(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    response = async_to_sync(HttpCommunicator(app, method, path, headers=headers).get_response)()
    monkeypatch.setattr(SyncToAsync, "__call__", hop)
    return response, hops


@pytest.mark.django_db(transaction=True)
def test_an_api_request_runs_its_middleware_and_view_in_one_hop(monkeypatch):
    headers = [(b"host", b"localhost"), (b"x-session-token", session_token(UserFactory()).encode())]
    response, hops = serve(application, "GET", "/api/v1/campaigns", headers, monkeypatch)
    assert response["status"] == 200, response["body"]
    assert isinstance(json.loads(response["body"]), (list, dict))
    assert (b"X-Frame-Options", b"DENY") in response["headers"]  # the middleware ran
    # request_started, the request (middleware + view), response.close: nothing else leaves the loop.
    assert hops == 3
    # Django's own handler hops once per synchronous middleware method: the reason for ours.
    _, stock_hops = serve(ASGIHandler(), "GET", "/api/v1/campaigns", headers, monkeypatch)
    assert stock_hops > 10


@pytest.mark.django_db(transaction=True)
def test_errors_and_anonymous_requests_answer_as_before(monkeypatch):
    headers = [(b"host", b"localhost")]
    response, _ = serve(application, "GET", "/api/v1/campaigns", headers, monkeypatch)
    assert response["status"] in (401, 403)
    assert json.loads(response["body"])["error"]["status"] == response["status"]
    response, _ = serve(application, "GET", "/api/v1/no-such-thing", headers, monkeypatch)
    assert response["status"] == 404
    response, _ = serve(application, "GET", "/healthz", headers, monkeypatch)
    assert response["status"] == 200


def test_the_application_serves_http_with_the_one_hop_handler():
    assert isinstance(application.application_mapping["http"], SyncChainHandler)


def test_the_server_keeps_its_startup_heap_out_of_full_collections():
    # In a fresh interpreter, as a server process starts: freezing this test process would be wrong.
    code = (
        "import gc, sys, crowdseg.asgi;"
        "print(gc.get_freeze_count(), 'gamification.api.views' in sys.modules, gc.get_threshold()[0])"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "crowdseg.settings.test")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    frozen, views_loaded, youngest = result.stdout.split()
    assert int(frozen) > 50_000 and views_loaded == "True" and int(youngest) == 7000
