"""Simulated volunteers play the game against the real stack: daphne, PostgreSQL, Redis, a Celery worker.

Each volunteer is one keep-alive HTTP connection plus one open game WebSocket (as the phone app
keeps them). Volunteers arrive at random over the first quarter of the run and open both then;
each joins the campaign, asks for rounds, "draws" each task for a random think time (3-10 s: a
quick player who boxes and accepts), submits with an Idempotency-Key, and now and then re-sends the same request
as a phone on a flaky network would. Reported: sustained submits/s, p50/p95 of next-round and
submit, errors, live events received, and submissions made vs stored (they must be equal: nothing
lost, nothing duplicated).

    .venv/bin/python bench/game_load.py            # 200 volunteers, 60 s
    .venv/bin/python bench/game_load.py --quick    # 50 volunteers, 15 s

Needs PostgreSQL (127.0.0.1:5432, trust) and Redis (127.0.0.1:6379); override with
--database-url / --redis-url. A throwaway database ``crowdseg_bench_<pid>`` is created and dropped.
The last line of output is the JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._aio import HttpClient, WebSocket  # noqa: E402
from bench._server import Server, percentile, worker_start  # noqa: E402
from inference.engine import rle  # noqa: E402

SETUP = """
import json, sys
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from accounts.models import User
from annotations.demo import MNI_DATASET, demo_load
from annotations.models import Dataset
from gamification import services

demo_load(mni_slices={golds}, mni_unlabelled={unlabelled})
dataset = Dataset.objects.get(name=MNI_DATASET)
campaign = services.campaign_create(
    owner=dataset.owner, dataset=dataset, name="load test", label_classes=list(dataset.label_classes.all()),
    round_size=10, annotations_per_image=5, gold_rate=0.15, round_seconds=900,
)
store = import_module(settings.SESSION_ENGINE).SessionStore
users = User.objects.bulk_create(
    User(username=f"volunteer{{i}}", pseudonym=f"load-volunteer-{{i:04d}}") for i in range({volunteers})
)
tokens = []
for user in User.objects.filter(username__startswith="volunteer").order_by("pk"):
    session = store()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    tokens.append(session.session_key)
# Players who came before: the leaderboards already hold {fillers} of them.
import random
from gamification.models import LeaderboardEntry
rng = random.Random(0)
fillers = User.objects.bulk_create(
    (User(username=f"earlier{{i}}", pseudonym=f"earlier-player-{{i:06d}}") for i in range({fillers})), batch_size=5000
)
for board in ("global:all", f"campaign:{{campaign.pk}}:all"):
    LeaderboardEntry.objects.bulk_create(
        (LeaderboardEntry(board=board, player=u, points=rng.randint(1, 200_000)) for u in fillers), batch_size=5000
    )
print(json.dumps({{"campaign": campaign.pk, "tokens": tokens, "images": dataset.images.count()}}))
"""

COUNT = """
import json
from annotations.models import Annotation
from gamification.models import Submission
print(json.dumps({"submissions": Submission.objects.count(), "annotations": Annotation.objects.count(),
                  "settled": Submission.objects.filter(status="settled").count()}))
"""


@dataclass
class Tally:
    next_round_ms: list[float] = field(default_factory=list)
    leaderboard_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    socket_open_ms: list[float] = field(default_factory=list)
    made: set = field(default_factory=set)  # (round, task) answered 201 the first time
    replays_sent: int = 0
    replays_identical: int = 0
    errors: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)
    submit_times: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


MASKS_PER_SIZE = 500
_masks: dict[tuple[int, int], list[dict]] = {}


def mask_for(width: int, height: int, rng: random.Random) -> dict:
    """A plausible drawing: a filled ellipse somewhere in the image. Drawn from a pool made once per
    image size, so the load generator spends its CPU on requests, not on drawing."""
    if (width, height) not in _masks:
        pool_rng = random.Random(width * 7919 + height)
        y, x = np.ogrid[:height, :width]
        pool = []
        for _ in range(MASKS_PER_SIZE):
            cy, cx = pool_rng.uniform(0.3, 0.7) * height, pool_rng.uniform(0.3, 0.7) * width
            ry, rx = pool_rng.uniform(0.1, 0.3) * height, pool_rng.uniform(0.1, 0.3) * width
            pool.append(rle.encode(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1))
        _masks[(width, height)] = pool
    return rng.choice(_masks[(width, height)])


async def volunteer(port, token, campaign, deadline, ramp, think, retry_share, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    # Players open the app over the first part of the run; the app opens its socket then.
    await asyncio.sleep(rng.uniform(0, ramp))
    headers = {"X-Session-Token": token}
    http = HttpClient("127.0.0.1", port, headers)
    try:
        started = time.perf_counter()
        socket = await WebSocket.open(
            "127.0.0.1", port, "/ws/v1/play", {**headers, "Origin": f"http://127.0.0.1:{port}"}
        )
        tally.socket_open_ms.append((time.perf_counter() - started) * 1000)
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
        tally.error(f"websocket {type(exc).__name__}: {str(exc)[:60]}")
        socket = None

    async def listen():
        while socket is not None:
            try:
                event = await socket.receive()
            except (ConnectionError, asyncio.IncompleteReadError):
                return
            if event is None:
                return
            tally.events[event.get("type")] = tally.events.get(event.get("type"), 0) + 1

    listener = asyncio.create_task(listen())
    status, _, _ = await http.request("POST", f"/api/v1/campaigns/{campaign}/join", {})
    if status != 200:
        tally.error(f"join {status}")
    while time.monotonic() < deadline:
        started = time.perf_counter()
        status, game_round, _ = await http.request("POST", f"/api/v1/campaigns/{campaign}/rounds")
        tally.next_round_ms.append((time.perf_counter() - started) * 1000)
        if status != 201:
            tally.error(f"round {status}")
            if status == 409:
                break
            await asyncio.sleep(1)
            continue
        started = time.perf_counter()  # the app shows the board between rounds
        status, _, _ = await http.request("GET", f"/api/v1/campaigns/{campaign}/leaderboard")
        tally.leaderboard_ms.append((time.perf_counter() - started) * 1000)
        if status != 200:
            tally.error(f"leaderboard {status}")
        for task in game_round["tasks"]:
            drawing = rng.uniform(*think)
            await asyncio.sleep(drawing)
            if time.monotonic() >= deadline:
                break
            body = {
                "rle": mask_for(task["image"]["width"], task["image"]["height"], rng),
                "time_spent_ms": int(drawing * 1000),
                "suggestion_use": "none",
            }
            path = f"/api/v1/rounds/{game_round['id']}/tasks/{task['id']}/submit"
            key = {"Idempotency-Key": uuid.uuid4().hex}
            started = time.perf_counter()
            status, answer, _ = await http.request("POST", path, body, key)
            tally.submit_ms.append((time.perf_counter() - started) * 1000)
            tally.submit_times.append(time.monotonic())
            if status != 201:
                tally.error(f"submit {status}")
                continue
            tally.made.add((game_round["id"], task["id"]))
            if rng.random() < retry_share:  # the answer "got lost": send the same request again
                tally.replays_sent += 1
                again_status, again, again_headers = await http.request("POST", path, body, key)
                if again_status == 201 and again == answer and again_headers.get("idempotent-replayed") == "true":
                    tally.replays_identical += 1
                else:
                    tally.error(f"replay {again_status}")
    await asyncio.sleep(1)  # let settlement events arrive
    listener.cancel()
    if socket is not None:
        await socket.close()
    await http.close()


async def play(port, tokens, campaign, seconds, think, retry_share) -> tuple[Tally, float]:
    tally = Tally()
    started = time.monotonic()
    deadline, ramp = started + seconds, seconds / 4
    await asyncio.gather(
        *(volunteer(port, t, campaign, deadline, ramp, think, retry_share, tally, seed=i) for i, t in enumerate(tokens))
    )
    return tally, time.monotonic() - started


def create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 volunteers for 15 s")
    parser.add_argument("--volunteers", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--think", type=float, nargs=2, default=(3.0, 10.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--retry-share", type=float, default=0.1, help="share of submits sent twice")
    parser.add_argument("--processes", type=int, default=2, help="daphne processes sharing the port (one per core)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    volunteers = args.volunteers or (50 if args.quick else 200)
    fillers = 10_000 if args.quick else 100_000
    seconds = args.seconds or (15 if args.quick else 60)

    db_name = f"crowdseg_bench_{os.getpid()}"
    try:
        create_database(args.database_url, db_name)
        redis.Redis.from_url(args.redis_url).flushdb()
    except Exception as exc:  # noqa: BLE001 - say what is missing and stop
        sys.exit(f"game_load needs PostgreSQL and Redis ({type(exc).__name__}: {exc})")
    database_url = args.database_url.rsplit("/", 1)[0] + f"/{db_name}"
    server = Server(
        extra_env={
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            "CROWDSEG_ROUND_RATE": "10000/hour",
            "CROWDSEG_SUBMIT_RATE": "10000/min",
        }
    )
    worker = None
    try:
        print(
            f"setting up: PostgreSQL database {db_name}, {volunteers} volunteers, {fillers:,} earlier players ...",
            flush=True,
        )
        server.manage("migrate", "--verbosity", "0")
        setup = json.loads(
            server.manage(
                "shell", stdin=SETUP.format(golds=20, unlabelled=100, volunteers=volunteers, fillers=fillers)
            ).splitlines()[-1]
        )
        worker = worker_start(server.env)
        server.start(processes=args.processes)
        print(f"playing: {volunteers} volunteers for {seconds:.0f} s on {setup['images']} images ...", flush=True)
        tally, elapsed = asyncio.run(
            play(server.port, setup["tokens"], setup["campaign"], seconds, args.think, args.retry_share)
        )
        time.sleep(2)
        stored = json.loads(server.manage("shell", stdin=COUNT).splitlines()[-1])
    finally:
        server.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        drop_database(args.database_url, db_name)

    submitted = len(tally.made)
    # Submits/s over the steady part: from the first to the last submission.
    span = (max(tally.submit_times) - min(tally.submit_times)) if len(tally.submit_times) > 1 else elapsed
    summary = {
        "volunteers": volunteers,
        "server_processes": args.processes,
        "seconds": round(elapsed, 1),
        "submits_per_s": round(len(tally.submit_ms) / span, 1) if span else 0.0,
        "next_round_p50_ms": round(percentile(tally.next_round_ms, 50), 1),
        "next_round_p95_ms": round(percentile(tally.next_round_ms, 95), 1),
        "submit_p50_ms": round(percentile(tally.submit_ms, 50), 1),
        "submit_p95_ms": round(percentile(tally.submit_ms, 95), 1),
        "socket_open_p95_ms": round(percentile(tally.socket_open_ms, 95), 1),
        "leaderboard_players": fillers + volunteers,
        "leaderboard_p50_ms": round(percentile(tally.leaderboard_ms, 50), 1),
        "leaderboard_p95_ms": round(percentile(tally.leaderboard_ms, 95), 1),
        "submitted": submitted,
        "stored": stored["submissions"],
        "duplicates": max(0, stored["submissions"] - submitted),
        "lost": max(0, submitted - stored["submissions"]),
        "annotations": stored["annotations"],
        "settled": stored["settled"],
        "replays": tally.replays_sent,
        "replays_identical": tally.replays_identical,
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "events": tally.events,
        "rounds": len(tally.next_round_ms),
    }
    print()
    print(f"{'volunteers':<22}{volunteers}")
    print(f"{'sustained submits/s':<22}{summary['submits_per_s']}")
    print(f"{'next round p50 / p95':<22}{summary['next_round_p50_ms']} / {summary['next_round_p95_ms']} ms")
    print(f"{'submit p50 / p95':<22}{summary['submit_p50_ms']} / {summary['submit_p95_ms']} ms")
    print(
        f"{'leaderboard p50 / p95':<22}{summary['leaderboard_p50_ms']} / {summary['leaderboard_p95_ms']} ms"
        f" ({summary['leaderboard_players']:,} players)"
    )
    print(f"{'socket open p95':<22}{summary['socket_open_p95_ms']} ms")
    print(f"{'made / stored':<22}{submitted} / {stored['submissions']} (annotations {stored['annotations']})")
    print(f"{'replays identical':<22}{tally.replays_identical} of {tally.replays_sent}")
    print(f"{'errors':<22}{summary['errors']} {tally.errors or ''}")
    print(f"{'live events':<22}{tally.events}")
    bar = summary["next_round_p95_ms"] < 100 and summary["submit_p95_ms"] < 100
    print(f"{'bar (p95 < 100 ms, 0 lost/dup)':<22}{'met' if bar and submitted == stored['submissions'] else 'NOT met'}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
