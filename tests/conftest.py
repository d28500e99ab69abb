"""Shared fixtures. Alice owns things, Charlie is the outsider who must be refused.

Django is imported inside fixtures only, so the pure-module tests (``annotations/io``,
``inference/engine``) also run without it: ``pytest -p no:django tests/inference``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL_STACK = os.environ.get("CROWDSEG_REAL_STACK") == "1"


def pytest_collection_modifyitems(config, items):
    if REAL_STACK:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL + Redis + a Celery worker (scripts/test runs these)")
    for item in items:
        if "real_stack" in item.keywords:
            item.add_marker(skip)


def cache_clear() -> None:
    """Empty the cache between tests; on Redis only our keys, never the Celery broker's."""
    from django.conf import settings
    from django.core.cache import cache

    prefix = settings.CACHES["default"].get("KEY_PREFIX")
    if prefix and "redis" in settings.CACHES["default"]["BACKEND"].lower():
        client = cache._cache.get_client(write=True)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_cache(request):
    """Rate limits and throttles start from zero in every test."""
    if "django_db_setup" in request.fixturenames or request.node.get_closest_marker("django_db"):
        from annotations.consensus import forget_cached_results

        cache_clear()
        forget_cached_results()  # fusion results cached per label class id, which tests reuse


def client_for(user):
    """An API client authenticated as ``user``."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice(db):
    """A researcher who owns the dataset under test."""
    from .factories import ResearcherFactory

    return ResearcherFactory(username="alice")


@pytest.fixture
def charlie(db):
    """Another researcher: must never see Alice's data."""
    from .factories import ResearcherFactory

    return ResearcherFactory(username="charlie")


@pytest.fixture
def volunteer(db):
    from .factories import UserFactory

    return UserFactory(username="vera", role="volunteer")


@pytest.fixture
def dataset(alice):
    from .factories import DatasetFactory

    return DatasetFactory(owner=alice, label_classes=["liver"])


def child_process_env() -> dict:
    """The environment of a child process that must open the test database (PostgreSQL, or the
    embedded run's SQLite file)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return {**os.environ, "DATABASE_URL": f"sqlite:///{db['NAME']}"}
    return {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """A real Celery worker in its own process, on the test database and the Redis broker."""
    from django.conf import settings

    from tests.inference.conftest import CACHE_DIR, model_cache_key

    env = {
        **child_process_env(),
        "DJANGO_SETTINGS_MODULE": "crowdseg.settings.test",
        # The model tests export (tests/inference/conftest.py); the worker reads it at task time.
        "CROWDSEG_MODEL_DIR": str(CACHE_DIR / f"medsam-{model_cache_key()}"),
        "CROWDSEG_DATA_DIR": str(settings.DATA_DIR),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "crowdseg",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--purge",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
    )
    from crowdseg.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {proc.returncode}")
        if app.control.ping(timeout=0.5):
            break
    else:
        proc.terminate()
        raise RuntimeError("the Celery worker did not answer within 60 s")
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def celery_tasks_run(request):
    """Who runs Celery tasks: the in-process eager mode (embedded), or a real worker (real stack).
    Tests using it need ``django_db(transaction=True)`` so the worker sees their data, and
    ``eventually`` to wait for it."""
    if os.environ.get("CROWDSEG_REAL_STACK"):
        request.getfixturevalue("celery_worker_process")


@pytest.fixture
def celery_in_process(settings):
    """Celery tasks run in this process, on the real stack too: for tests of what the tasks decide
    (fusion, then settlement), not of the worker that runs them, and whose data a worker in another
    process could not see (the test's transaction is never committed)."""
    from crowdseg.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    app.conf.task_always_eager = eager


def eventually(check, timeout: float = 30.0):
    """``check()``'s first truthy value, polling: a real worker finishes a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture
def daphne_server(django_db_blocker, settings):
    """A real daphne process serving crowdseg on a free loopback port, on the test database and
    this run's data folder: ``(host, port)``. For tests that must see what a client on the wire
    sees (handshake status codes, headers). Needs ``django_db(transaction=True)``."""
    import socket
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **child_process_env(),
        "DJANGO_SETTINGS_MODULE": "crowdseg.settings.test",
        "CROWDSEG_MODEL_DIR": str(settings.CROWDSEG_MODEL_DIR),
        "CROWDSEG_DATA_DIR": str(settings.DATA_DIR),
    }
    # The log is a file, not a pipe: a chatty server never blocks on it.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "crowdseg.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"daphne exited with {proc.returncode}: {log.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    proc.terminate()
                    raise RuntimeError("daphne did not listen within 60 s") from None
                time.sleep(0.2)
        yield "127.0.0.1", port
        proc.terminate()
        proc.wait(timeout=30)
