"""Settings for the test suite: the embedded default unless DATABASE_URL / REDIS_URL are set."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import CACHES, DATABASES, REDIS_URL, STORAGES, env

SECRET_KEY = "test-only-not-secret-5d8a2c7e0b9f4e1a8c6d3b2a1f0e9d8c"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed, tests only

# Each test run writes into its own folder.
DATA_DIR = Path(env("CROWDSEG_DATA_DIR") or tempfile.mkdtemp(prefix="crowdseg-test-"))
MEDIA_ROOT = DATA_DIR / "media"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    **STORAGES,
    "private": {**STORAGES["private"], "OPTIONS": {"location": str(DATA_DIR / "private"), "base_url": None}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if not REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": "crowdseg-test"}}
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # The real Celery worker of the service-bound tests opens the same test database (its name
    # comes from DATABASE_URL, so runs on different databases never drop each other's).
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}"}
    # pytest-django creates and drops the test database; pooled connections would hold it open.
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
else:
    # A file, not shared-cache memory: concurrency tests need SQLite's busy timeout, which
    # in-memory shared-cache databases ignore ("database table is locked").
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
CROWDSEG_MODEL_DIR = Path(env("CROWDSEG_MODEL_DIR") or DATA_DIR / "models" / "litemedsam")
CROWDSEG_EMBED_ON_IMPORT = False  # tests that need embeddings ask for them
