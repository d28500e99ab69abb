"""Shared by benchmarks that drive the real server: a throwaway data folder, the exported model,
a daphne process, an authenticated client. Runs on the embedded default (SQLite)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MODEL_DIR = ROOT / "var" / "models" / "litemedsam"  # the quickstart's model: exported once, reused


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """manage.py commands and a daphne server over a fresh data folder."""

    def __init__(self, extra_env: dict | None = None) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="crowdseg-bench-"))
        self.port = free_port()
        # The embedded default unless the caller names services in ``extra_env``.
        inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        self.env = {
            **inherited,
            "DJANGO_SETTINGS_MODULE": "crowdseg.settings.local",
            "DJANGO_DEBUG": "false",
            "CROWDSEG_DATA_DIR": str(self.data_dir),
            "CROWDSEG_MODEL_DIR": str(MODEL_DIR),
            "CROWDSEG_EMBED_ON_IMPORT": "false",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, input=stdin, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, processes: int = 1) -> None:
        """Start daphne; with ``processes`` > 1, that many share one listening socket and the
        kernel spreads connections over them (one process per core, as a deployment would)."""
        if processes == 1:
            command = ["-b", "127.0.0.1", "-p", str(self.port)]
            pass_fds: tuple = ()
        else:
            self._listener = socket.socket()
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", self.port))
            self._listener.listen(1024)
            command, pass_fds = ["--fd", str(self._listener.fileno())], (self._listener.fileno(),)
        self.processes = [
            subprocess.Popen(
                [PYTHON, "-m", "daphne", *command, "crowdseg.asgi:application"],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=(self.data_dir / f"daphne-{i}.log").open("wb"),  # kept for post-mortems
                pass_fds=pass_fds,
            )
            for i in range(processes)
        ]
        self.process = self.processes[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start within 60 s")

    def stop(self) -> None:
        for process in getattr(self, "processes", []):
            process.terminate()
            process.wait(timeout=30)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        token: str | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, dict, dict]:
        own = conn is None
        conn = conn or self.connection()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Session-Token"] = token
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        if own:
            conn.close()
        data = json.loads(raw) if raw and response.getheader("Content-Type", "").startswith("application/json") else {}
        return response.status, data, dict(response.getheaders())

    def login(self, username: str, password: str) -> str:
        status, data, _ = self.request(
            "POST", "/_allauth/app/v1/auth/login", {"username": username, "password": password}
        )
        if status != 200:
            raise RuntimeError(f"login failed: {status} {data}")
        return data["meta"]["session_token"]


def worker_start(env: dict) -> subprocess.Popen:
    """A Celery worker (one process, solo pool) on the server's settings."""
    return subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "crowdseg", "worker", "--pool=solo", "--loglevel=WARNING", "--without-gossip"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
