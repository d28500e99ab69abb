"""Browser tests of the web client (``client/``, served at ``/play/``): Playwright for Python
driving Debian's chromium against a real daphne server.

Playwright's own browser download cannot work here, so the tests drive the system's chromium
(``CROWDSEG_CHROMIUM``, default ``/usr/bin/chromium``). Where it is absent they are skipped with
a message; under ``CI=true`` that is a failure (``scripts/test`` installs it there first).
Screenshots of each screen go to ``CROWDSEG_CLIENT_SCREENSHOTS`` when set (``docs/client`` holds
the ones the README shows), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.inference.conftest import medsam_model_dir, real_images  # noqa: F401  (fixtures)

# Playwright's sync API runs an event loop in this thread; the test's own database calls are
# ordinary synchronous calls between its steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PHONE = {
    "viewport": {"width": 360, "height": 640},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0 Mobile Safari/537.36",
}


def chromium_path() -> str | None:
    path = os.environ.get("CROWDSEG_CHROMIUM") or "/usr/bin/chromium"
    return path if Path(path).exists() or shutil.which(path) else None


# Per module, not per session: while Playwright's sync API runs, its event loop is the thread's
# running loop, and later tests' asyncio.run() (the socket tests) would refuse to start.
@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        message = "chromium is not installed (apt-get install chromium, or set CROWDSEG_CHROMIUM)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: the browser tests must run, but {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    out = Path(os.environ.get("CROWDSEG_CLIENT_SCREENSHOTS") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    return out
