"""The web client's pages: the shell at /play/ and its service worker, and the static files they
name (the browser tests in tests/client drive them in chromium)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from crowdseg.play import ORT_FILES

# A finished request closes unusable connections, which touches the database.
pytestmark = pytest.mark.django_db


def test_the_shell_loads_the_client_from_static_files():
    r = Client().get("/play/")
    assert r.status_code == 200
    page = r.content.decode()
    assert 'src="/static/client/app.js"' in page and 'href="/static/client/manifest.webmanifest"' in page


def test_the_service_worker_is_served_from_play_and_names_every_shell_file():
    r = Client().get("/play/sw.js")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/javascript")
    assert r["Cache-Control"] == "no-cache"  # a new client reaches phones on their next visit
    body = r.content.decode()
    shell = json.loads(body.split("const SHELL = ", 1)[1].split(";\n", 1)[0])
    assert "/play/" in shell and "/static/client/app.js" in shell and "/static/client/decoder-worker.js" in shell
    assert {f"/static/client/ort/{name}" for name in ORT_FILES} <= set(shell)
    assert "sw.js" not in " ".join(shell)


def test_every_shell_file_is_served():
    body = Client().get("/play/sw.js").content.decode()
    for url in json.loads(body.split("const SHELL = ", 1)[1].split(";\n", 1)[0]):
        response = Client().get(url)
        assert response.status_code == 200, url
        if hasattr(response, "close"):
            response.close()


def test_the_page_and_the_clients_files_are_cross_origin_isolated():
    """COOP/COEP on the page and on the worker's script: the decoder may then use wasm threads."""
    page = Client().get("/play/")
    assert page["Cross-Origin-Opener-Policy"] == "same-origin"
    assert page["Cross-Origin-Embedder-Policy"] == "require-corp"
    worker = Client().get("/static/client/decoder-worker.js")
    assert worker.status_code == 200 and worker["Cross-Origin-Embedder-Policy"] == "require-corp"
    if hasattr(worker, "close"):
        worker.close()


def test_the_pages_refuse_writes():
    assert Client().post("/play/").status_code == 405
    assert Client().post("/play/sw.js").status_code == 405
