"""Classes in live sessions at once against the real stack: daphne, PostgreSQL, Redis, a Celery worker.

Each class is a teacher's screen (one WebSocket following the session, pressing the buttons over it
as the projector page does) and its pupils' phones (one WebSocket each: ``live.join`` with the
session's code, then ``live.submit`` for each round). Each teacher starts a round, the class draws
for a random think time and answers (a share of answers is sent twice, as a phone on a flaky
network would), the round's time runs out, the teacher's screen reads the results, then the next
round. Classes start their rounds independently, a few seconds apart, as real lessons would.

Measured: the teacher's "start round" to each pupil's socket hearing ``live.round_started``
(fan-out, the bar: p95 <= 250 ms), a pupil's answer to its ``live.submitted`` (the bar: p95 <
100 ms), and answers made vs stored (they must be equal: nothing lost, nothing duplicated).

    .venv/bin/python bench/classroom_live.py            # 30 classes x 30 pupils, 3 rounds
    .venv/bin/python bench/classroom_live.py --quick    # 10 classes x 30 pupils, 2 rounds

Needs PostgreSQL (127.0.0.1:5432, trust) and Redis; override with --database-url / --redis-url
(default Redis db 10). A throwaway database ``crowdseg_bench_live_<pid>`` is created and dropped
(``--database-name`` to name it). The last line of output is the JSON summary.
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

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._aio import WebSocket  # noqa: E402
from bench._server import Server, percentile, worker_start  # noqa: E402
from bench.game_load import create_database, drop_database, mask_for  # noqa: E402

SETUP = """
import json
from datetime import timedelta
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.utils import timezone
from accounts.models import User
from annotations.demo import MNI_DATASET, demo_load
from annotations.models import Dataset
from gamification import live_sessions, services
from gamification.models import Assignment, ClassMember, Classroom

demo_load(mni_slices={golds}, mni_unlabelled={unlabelled})
dataset = Dataset.objects.get(name=MNI_DATASET)
white = dataset.label_classes.get(name="white matter")
campaign = services.campaign_create(
    owner=dataset.owner, dataset=dataset, name="live lessons", label_classes=[white],
    round_size=1, annotations_per_image=3, gold_rate=0.2,
)
for task in white.tasks.filter(gold__isnull=False).order_by("pk")[:{practice}]:
    live_sessions.practice_task_mark(task=task, by=dataset.owner)
store = import_module(settings.SESSION_ENGINE).SessionStore

def token(user):
    session = store()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key

classes = []
due = timezone.now() + timedelta(days=7)
for c in range({classes}):
    teacher = User.objects.create(username=f"teacher{{c}}", role="teacher", pseudonym=f"teacher-{{c:03d}}")
    classroom = Classroom.objects.create(teacher=teacher, name=f"class {{c}}")
    Assignment.objects.create(classroom=classroom, campaign=campaign, target_tasks=10, due_at=due)
    pupils = User.objects.bulk_create(
        User(username=f"pupil{{c}}-{{p}}", role="pupil", pseudonym=f"pupil-{{c:03d}}-{{p:03d}}")
        for p in range({pupils})
    )
    pupils = list(User.objects.filter(username__startswith=f"pupil{{c}}-").order_by("pk"))
    ClassMember.objects.bulk_create(ClassMember(classroom=classroom, pupil=p, real_name=p.username) for p in pupils)
    session = live_sessions.live_session_open(
        teacher=teacher, classroom=classroom, campaign=campaign, round_seconds={round_seconds}, capacity=100
    )
    classes.append({{"session": str(session.pk), "code": session.code, "teacher": token(teacher),
                    "pupils": [token(p) for p in pupils]}})
print(json.dumps({{"classes": classes, "images": dataset.images.count()}}))
"""

COUNT = """
import json
from gamification.models import LiveRound, Submission
live = Submission.objects.filter(round_task__round__live_answer__isnull=False)
print(json.dumps({"stored": live.count(), "annotations": live.values("annotation").distinct().count(),
                  "rounds_closed": LiveRound.objects.filter(closed_at__isnull=False).count()}))
"""


@dataclass
class Tally:
    fanout_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    join_ms: list[float] = field(default_factory=list)
    results_ms: list[float] = field(default_factory=list)  # round's time up -> the teacher has its results
    made: set = field(default_factory=set)  # (session, round, pupil) answered 201 the first time
    replays_sent: int = 0
    replays_identical: int = 0
    missed_rounds: int = 0  # a pupil's socket never heard a round start
    errors: dict = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Inbox:
    """A socket with its messages sorted as they arrive: answers by request id, events by type."""

    def __init__(self, socket: WebSocket) -> None:
        self.socket = socket
        self.queues: dict[str, asyncio.Queue] = {}
        self.reader = asyncio.create_task(self._read())

    def queue(self, key: str) -> asyncio.Queue:
        return self.queues.setdefault(key, asyncio.Queue())

    async def _read(self) -> None:
        while True:
            try:
                message = await self.socket.receive()
            except (ConnectionError, asyncio.IncompleteReadError):
                return
            if message is None:
                return
            arrived = time.perf_counter()
            key = f"id:{message['id']}" if message.get("id") else f"type:{message.get('type')}"
            self.queue(key).put_nowait((arrived, message))

    async def answer(self, request: dict, timeout: float = 30) -> tuple[float, dict]:
        await self.socket.send(request)
        return await asyncio.wait_for(self.queue(f"id:{request['id']}").get(), timeout)

    async def event(self, event_type: str, timeout: float) -> tuple[float, dict]:
        return await asyncio.wait_for(self.queue(f"type:{event_type}").get(), timeout)

    async def close(self) -> None:
        self.reader.cancel()
        await self.socket.close()


async def open_socket(port: int, token: str) -> WebSocket:
    headers = {"X-Session-Token": token, "Origin": f"http://127.0.0.1:{port}"}
    return await WebSocket.open("127.0.0.1", port, "/ws/v1/play", headers)


async def pupil(port, klass, token, rounds, think, retry_share, round_seconds, tally: Tally, rng, starts, ramp) -> None:
    """A pupil's phone: join, then answer each round it hears start."""
    await asyncio.sleep(rng.uniform(0, ramp))  # phones come out of bags over the first seconds
    try:
        inbox = Inbox(await open_socket(port, token))
        started = time.perf_counter()
        _, joined = await inbox.answer({"type": "live.join", "id": "join", "code": klass["code"]})
        tally.join_ms.append((time.perf_counter() - started) * 1000)
        if joined["type"] != "live.state":
            tally.error(f"join {joined.get('error', {}).get('code')}")
            return
    except (TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
        tally.error(f"pupil socket {type(exc).__name__}")
        return
    me = joined["state"]["me"]["participant"]
    late = joined["state"]["current_round"]  # joined while a round runs: it plays that one too
    for _ in range(rounds):
        if late is not None:
            event, late = late, None
        else:
            try:
                arrived, event = await inbox.event("live.round_started", timeout=round_seconds * 3 + 30)
            except TimeoutError:
                tally.missed_rounds += 1
                break
            sent = starts.get((klass["session"], event["round"]))
            if sent is not None:
                tally.fanout_ms.append((arrived - sent) * 1000)
        drawing = rng.uniform(*think)
        await asyncio.sleep(drawing)
        image = event["image"]
        request = {
            "type": "live.submit",
            "id": f"s{event['round']}",
            "session": klass["session"],
            "round": event["round"],
            "idempotency_key": uuid.uuid4().hex,
            "rle": mask_for(image["width"], image["height"], rng),
            "time_spent_ms": int(drawing * 1000),
            "suggestion_use": "none",
        }
        started = time.perf_counter()
        try:
            arrived, answer = await inbox.answer(request)
        except TimeoutError:
            tally.error("submit timeout")
            continue
        tally.submit_ms.append((arrived - started) * 1000)
        if answer["type"] != "live.submitted" or answer["status"] != 201:
            tally.error(f"submit {answer.get('error', {}).get('code', answer.get('status'))}")
            continue
        tally.made.add((klass["session"], event["round"], me))
        if rng.random() < retry_share:  # the answer "got lost": the phone sends the same again
            tally.replays_sent += 1
            try:
                _, again = await inbox.answer({**request, "id": f"r{event['round']}"})
            except TimeoutError:
                tally.error("replay timeout")
                continue
            same = again.get("body") == answer["body"] and again.get("replayed") is True
            tally.replays_identical += same
            if not same:
                tally.error(f"replay {again.get('status')}")
    await inbox.close()


async def teacher(port, klass, rounds, round_seconds, stagger, tally: Tally, rng, starts) -> None:
    """The teacher's screen: follow the session, start each round, read its results, end."""
    inbox = Inbox(await open_socket(port, klass["teacher"]))
    _, watched = await inbox.answer({"type": "live.watch", "id": "watch", "session": klass["session"]})
    # The teacher waits for the class (the projector shows who joined), then starts when ready.
    # A pupil joining as the screen opens may be in the state and heard too: count each once.
    present = {p["id"] for p in watched["state"]["participants"]}
    try:
        while len(present) < len(klass["pupils"]):
            _, joined = await inbox.event("live.joined", timeout=60)
            present.add(joined["participant"])
    except TimeoutError:
        tally.error("class not all in")
    await asyncio.sleep(stagger)
    for number in range(1, rounds + 1):
        request = {"type": "live.control", "id": f"start{number}", "session": klass["session"], "action": "start"}
        starts[(klass["session"], number)] = time.perf_counter()
        _, answer = await inbox.answer(request)
        if answer["type"] != "live.state":
            tally.error(f"start {answer.get('error', {}).get('code')}")
            break
        # The round's time runs out (a worker job closes it; the projector's next read would too).
        await asyncio.sleep(round_seconds)
        time_up = time.perf_counter()
        try:
            await inbox.event("live.round_closed", timeout=30)
        except TimeoutError:
            tally.error("round not closed")
        tally.results_ms.append((time.perf_counter() - time_up) * 1000)
        await asyncio.sleep(rng.uniform(1.0, 1.5))  # the class looks at the results
    await inbox.answer({"type": "live.control", "id": "end", "session": klass["session"], "action": "end"})
    await inbox.close()


async def lessons(port, classes, rounds, think, retry_share, round_seconds) -> Tally:
    tally, starts = Tally(), {}
    rng = random.Random(0)
    jobs = []
    ramp = min(10.0, 0.01 * sum(len(klass["pupils"]) for klass in classes))
    for c, klass in enumerate(classes):
        for p, token in enumerate(klass["pupils"]):
            jobs.append(
                pupil(
                    port, klass, token, rounds, think, retry_share, round_seconds, tally,
                    random.Random(c * 1000 + p), starts, ramp,
                )
            )  # fmt: skip
    # Teachers start a few seconds apart once their class is in.
    pupils = [asyncio.create_task(job) for job in jobs]
    teachers = [
        teacher(port, klass, rounds, round_seconds, rng.uniform(0, 2), tally, random.Random(c), starts)
        for c, klass in enumerate(classes)
    ]
    await asyncio.gather(*teachers)
    await asyncio.gather(*pupils)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 classes of 30, 2 rounds")
    parser.add_argument("--classes", type=int)
    parser.add_argument("--pupils", type=int, default=30, help="per class")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--round-seconds", type=int, help="default 30 (quick: 12)")
    parser.add_argument(
        "--think", type=float, nargs=2, metavar=("MIN_S", "MAX_S"), help="drawing time (default: 20-85 %% of a round)"
    )
    parser.add_argument("--retry-share", type=float, default=0.1, help="share of answers sent twice")
    parser.add_argument("--processes", type=int, default=2, help="daphne processes sharing the port (one per core)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-name", default=f"crowdseg_bench_live_{os.getpid()}")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    classes = args.classes or (10 if args.quick else 30)
    rounds = args.rounds or (2 if args.quick else 3)
    round_seconds = args.round_seconds or (12 if args.quick else 30)
    think = tuple(args.think) if args.think else (0.2 * round_seconds, 0.85 * round_seconds)
    if think[1] >= round_seconds:
        sys.exit("--think must end before --round-seconds: every answer is meant to arrive in time")

    try:
        create_database(args.database_url, args.database_name)
        redis.Redis.from_url(args.redis_url).flushdb()
    except Exception as exc:  # noqa: BLE001 - say what is missing and stop
        sys.exit(f"classroom_live needs PostgreSQL and Redis ({type(exc).__name__}: {exc})")
    database_url = args.database_url.rsplit("/", 1)[0] + f"/{args.database_name}"
    server = Server(extra_env={"DATABASE_URL": database_url, "REDIS_URL": args.redis_url})
    worker = None
    try:
        print(f"setting up: {classes} classes of {args.pupils} pupils in database {args.database_name} ...", flush=True)
        server.manage("migrate", "--verbosity", "0")
        script = SETUP.format(
            golds=6, unlabelled=6, practice=3, classes=classes, pupils=args.pupils, round_seconds=round_seconds
        )
        setup = json.loads(server.manage("shell", stdin=script).splitlines()[-1])
        worker = worker_start(server.env)
        server.start(processes=args.processes)
        print(f"teaching: {classes} lessons of {rounds} rounds ({round_seconds} s) at once ...", flush=True)
        started = time.monotonic()
        tally = asyncio.run(lessons(server.port, setup["classes"], rounds, think, args.retry_share, round_seconds))
        elapsed = time.monotonic() - started
        stored = json.loads(server.manage("shell", stdin=COUNT).splitlines()[-1])
    finally:
        server.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        drop_database(args.database_url, args.database_name)

    submitted = len(tally.made)
    pupils = classes * args.pupils
    summary = {
        "classes": classes,
        "pupils": pupils,
        "rounds": rounds,
        "round_seconds": round_seconds,
        "think_s": list(think),
        "server_processes": args.processes,
        "seconds": round(elapsed, 1),
        "round_start_fanout_p50_ms": round(percentile(tally.fanout_ms, 50), 1) if tally.fanout_ms else None,
        "round_start_fanout_p95_ms": round(percentile(tally.fanout_ms, 95), 1) if tally.fanout_ms else None,
        "round_starts_heard": len(tally.fanout_ms),
        "submit_p50_ms": round(percentile(tally.submit_ms, 50), 1) if tally.submit_ms else None,
        "submit_p95_ms": round(percentile(tally.submit_ms, 95), 1) if tally.submit_ms else None,
        "join_p95_ms": round(percentile(tally.join_ms, 95), 1) if tally.join_ms else None,
        "results_p95_ms": round(percentile(tally.results_ms, 95), 1) if tally.results_ms else None,
        "submitted": submitted,
        "stored": stored["stored"],
        "duplicates": max(0, stored["stored"] - submitted),
        "lost": max(0, submitted - stored["stored"]),
        "replays": tally.replays_sent,
        "replays_identical": tally.replays_identical,
        "rounds_closed": stored["rounds_closed"],
        "missed_rounds": tally.missed_rounds,
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
    }
    expected = pupils * rounds
    print()
    print(f"{'classes x pupils':<36}{classes} x {args.pupils} ({rounds} rounds each)")
    print(f"{'start round -> pupil p50/p95':<36}{summary['round_start_fanout_p50_ms']} / "
          f"{summary['round_start_fanout_p95_ms']} ms ({len(tally.fanout_ms)} of {expected} heard)")  # fmt: skip
    print(f"{'submit p50 / p95':<36}{summary['submit_p50_ms']} / {summary['submit_p95_ms']} ms")
    print(f"{'join p95':<36}{summary['join_p95_ms']} ms")
    print(f"{'time up -> results p95':<36}{summary['results_p95_ms']} ms")
    print(f"{'made / stored':<36}{submitted} / {stored['stored']} (of {expected} expected)")
    print(f"{'replays identical':<36}{tally.replays_identical} of {tally.replays_sent}")
    print(f"{'errors':<36}{summary['errors']} {tally.errors or ''}")
    fanout, submit = summary["round_start_fanout_p95_ms"], summary["submit_p95_ms"]
    bar = (
        fanout is not None
        and fanout <= 250
        and submit is not None
        and submit < 100
        and submitted == stored["stored"] == expected
        and not summary["errors"]
    )
    print(f"{'bar (<=250 ms, <100 ms, 0 lost/dup)':<36}{'met' if bar else 'NOT met'}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
