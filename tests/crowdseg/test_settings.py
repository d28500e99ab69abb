"""Settings come from the environment; production refuses to start half-configured."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DEPLOYMENT_ENV = {
    "DJANGO_SETTINGS_MODULE": "crowdseg.settings.production",
    "DJANGO_ALLOWED_HOSTS": "crowdseg.example.org",
    "DATABASE_URL": "postgres://crowdseg@db.internal:5432/crowdseg",
    "REDIS_URL": "redis://cache.internal:6379/0",
}


def manage(*args: str, env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CROWDSEG_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "CROWDSEG_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check(tmp_path):
    env = {**DEPLOYMENT_ENV, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_reads_the_secret_key_from_a_file(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text(secrets.token_urlsafe(50) + "\n")
    env = {**DEPLOYMENT_ENV, "DJANGO_SECRET_KEY_FILE": str(key_file)}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"])
def test_production_refuses_to_start_without(missing, tmp_path):
    env = {**DEPLOYMENT_ENV, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    env.pop(missing)
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr


def test_embedded_default_uses_sqlite_memory_layer_and_in_process_celery(tmp_path):
    script = (
        "from django.conf import settings as s;"
        "print('SETTINGS', s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'],"
        " s.CELERY_TASK_ALWAYS_EAGER, s.MEDIA_ROOT)"
    )
    result = manage("shell", "-c", script, env={"DJANGO_SETTINGS_MODULE": "crowdseg.settings.local"}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("SETTINGS"))
    engine, layer, eager, media = line.split()[1:]
    assert engine == "django.db.backends.sqlite3"
    assert layer == "channels.layers.InMemoryChannelLayer"
    assert eager == "True"
    assert media.startswith(str(tmp_path))  # every file under CROWDSEG_DATA_DIR
