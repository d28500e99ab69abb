"""A whole lesson on the real stack: daphne, PostgreSQL, Redis and a Celery worker. A teacher's
screen, the projector page and 30 pupils' phones, on the wire, as a classroom would run it."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from gamification import live_sessions
from gamification.models import Assignment, ClassMember, Classroom, LiveRound, Submission
from tests.crowdseg.test_asgi import session_token
from tests.factories import UserFactory

from .conftest import campaign_make, square, submission_body

PUPILS = 30
ROUND_SECONDS = 10  # the shortest round a teacher may set


@pytest.mark.real_stack
@pytest.mark.django_db(transaction=True)
def test_a_teacher_a_projector_and_30_pupils_run_a_lesson_end_to_end(alice, daphne_server, celery_tasks_run):
    from bench._aio import HttpClient, WebSocket

    game = campaign_make(alice, images=6, golds=3)
    practice_task = sorted(game.gold_task_ids, key=str)[0]
    live_sessions.practice_task_mark(task=game.campaign.label_classes.get().tasks.get(pk=practice_task), by=alice)
    teacher = UserFactory(username="tom", role="teacher")
    classroom = Classroom.objects.create(teacher=teacher, name="Year 9 Biology")
    Assignment.objects.create(
        classroom=classroom, campaign=game.campaign, target_tasks=5, due_at=timezone.now() + timedelta(days=7)
    )
    pupils = [
        UserFactory(username=f"pupil{i}", role="pupil", email="", pseudonym=f"otter-{i:04d}") for i in range(PUPILS + 1)
    ]
    for i, pupil in enumerate(pupils):
        ClassMember.objects.create(classroom=classroom, pupil=pupil, real_name=f"Child {i}")
    tokens = {user.pk: session_token(user) for user in [teacher, *pupils]}
    late_pupil, pupils = pupils[-1], pupils[:-1]
    host, port = daphne_server
    origin = {"Origin": f"http://{host}"}

    async def socket(user) -> WebSocket:
        return await WebSocket.open(host, port, "/ws/v1/play", {**origin, "X-Session-Token": tokens[user.pk]})

    async def until(ws: WebSocket, wanted: str, timeout: float = 30) -> dict:
        """The next message of type ``wanted`` (events of other kinds pass by)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
            if message["type"] in (wanted, "error"):
                return message

    async def lesson():
        screen_http = HttpClient(host, port, {"X-Session-Token": tokens[teacher.pk]})
        status, opened, _ = await screen_http.request(
            "POST",
            "/api/v1/live-sessions",
            {"classroom": classroom.pk, "campaign": game.campaign.pk, "round_seconds": ROUND_SECONDS},
        )
        assert status == 201, opened
        session_id, code = opened["id"], opened["code"]
        # The projector: a browser on the classroom PC, signed in by its cookie.
        cookie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={tokens[teacher.pk]}"}
        projector = HttpClient(host, port, cookie)
        page = await raw_get(host, port, f"/live/{session_id}/projector", cookie)
        assert code in page and "live.watch" in page
        screen = await socket(teacher)
        await screen.send({"type": "live.watch", "id": "w", "session": session_id})
        assert (await until(screen, "live.state"))["state"]["state"] == "lobby"

        phones = [await socket(pupil) for pupil in pupils]
        for phone in phones:
            await phone.send({"type": "live.join", "id": "j", "code": code})
        joined = [await until(phone, "live.state") for phone in phones]
        assert {j["state"]["me"]["pseudonym"] for j in joined} == {p.pseudonym for p in pupils}
        heard = [await until(screen, "live.joined") for _ in pupils]  # who joined, live
        assert len({h["participant"] for h in heard}) == PUPILS

        # Round 1, for everyone at once: the same image on every phone.
        await screen.send({"type": "live.control", "id": "c1", "session": session_id, "action": "start"})
        assert (await until(screen, "live.state"))["state"]["state"] == "round"
        started = [await until(phone, "live.round_started") for phone in phones]
        assert {s["task"] for s in started} == {str(practice_task)} and {s["round"] for s in started} == {1}
        await asyncio.sleep(2)  # the class draws
        keys = {}
        for i, phone in enumerate(phones):
            keys[i] = f"lesson-key-{i:04d}"
            body = submission_body(square(10 + i % 4, 10, 40 - i % 3, 30), time_spent_ms=2000)
            if i % 5 == 4:  # a phone whose socket is down sends its answer over REST
                pupil_http = HttpClient(host, port, {"X-Session-Token": tokens[pupils[i].pk]})
                status, answer, _ = await pupil_http.request(
                    "POST", f"/api/v1/live-sessions/{session_id}/rounds/1/submit", body, {"Idempotency-Key": keys[i]}
                )
                await pupil_http.close()
                assert status == 201, answer
                continue
            message = {"type": "live.submit", "id": f"s{i}", "session": session_id, "round": 1, **body}
            await phone.send({**message, "idempotency_key": keys[i]})
            answer = await until(phone, "live.submitted")
            assert answer["status"] == 201, answer
            if i % 10 == 0:  # the answer "got lost": the phone sends it again
                await phone.send({**message, "id": f"r{i}", "idempotency_key": keys[i]})
                again = await until(phone, "live.submitted")
                assert again["replayed"] is True and again["body"] == answer["body"]
        # A phone drops and comes back: the same pupil, their answer kept.
        await phones[3].close()
        phones[3] = await socket(pupils[3])
        await phones[3].send({"type": "live.join", "id": "j2", "code": code})
        assert (await until(phones[3], "live.state"))["state"]["current_round"]["submitted"] is True

        # Time is up: the worker closes the round; every phone hears the results.
        closed = [await until(phone, "live.round_closed", timeout=ROUND_SECONDS + 30) for phone in phones]
        assert {c["answers"] for c in closed} == {PUPILS}
        board = closed[0]["leaderboard"]
        assert len(board) == live_sessions.LEADERBOARD_SIZE and all(e["pseudonym"].startswith("otter-") for e in board)
        # The projector's polling sees the class's label against the expert outline.
        state = await projector_state(projector, session_id)
        assert state["state"] == "results" and state["rounds"][0]["expert"]["dice"] > 0.8
        status, _, headers = await projector.request("GET", state["rounds"][0]["overlay_url"])
        assert status == 200 and headers["content-type"] == "image/png"

        # Round 2: a latecomer joins mid-round, a pupil is removed, the teacher ends the lesson.
        await screen.send({"type": "live.control", "id": "c2", "session": session_id, "action": "start"})
        second = [await until(phone, "live.round_started") for phone in phones]
        assert {s["round"] for s in second} == {2} and {s["task"] for s in second} != {str(practice_task)}
        late = await socket(late_pupil)
        await late.send({"type": "live.join", "id": "j", "code": code})
        late_state = (await until(late, "live.state"))["state"]
        assert late_state["current_round"]["round"] == 2
        await asyncio.sleep(1.5)
        for i, phone in enumerate([*phones[:20], late]):
            body = submission_body(square(5, 5 + i % 4, 30, 25), time_spent_ms=1600)
            key = uuid.uuid4().hex
            await phone.send(
                {"type": "live.submit", "id": "t", "session": session_id, "round": 2, **body} | {"idempotency_key": key}
            )
            assert (await until(phone, "live.submitted"))["status"] == 201
        kicked = heard[29]["participant"]
        await screen.send(
            {"type": "live.control", "id": "k", "session": session_id, "action": "kick", "participant": kicked}
        )
        assert (await until(phones[29], "live.kicked"))["session"] == session_id
        await screen.send({"type": "live.control", "id": "e", "session": session_id, "action": "end"})
        ended = [await until(phone, "live.ended") for phone in phones[:29]]
        assert len(ended) == 29

        # The teacher's report, downloaded.
        status, _, headers = await screen_http.request("GET", f"/api/v1/live-sessions/{session_id}/report")
        assert status == 200
        report_csv = await raw_get(
            host,
            port,
            f"/api/v1/live-sessions/{session_id}/report?download=csv",
            {"X-Session-Token": tokens[teacher.pk]},
        )
        for ws in [screen, *phones, late]:
            await ws.close()
        await screen_http.close()
        await projector.close()
        return session_id, report_csv

    session_id, report_csv = asyncio.run(asyncio.wait_for(lesson(), 120))
    rows = list(csv.DictReader(io.StringIO(report_csv)))
    assert len(rows) == (PUPILS + 1) * 2 and "Child 7" in {r["real_name"] for r in rows}
    answered = [r for r in rows if r["answered"] == "True"]
    assert len(answered) == PUPILS + 21
    # Every answer stored once: nothing lost, nothing duplicated.
    stored = Submission.objects.filter(round_task__round__live_answer__live_round__session_id=session_id)
    assert stored.count() == PUPILS + 21
    rounds = LiveRound.objects.filter(session_id=session_id).order_by("number")
    assert [r.closed_at is not None for r in rounds] == [True, True] and rounds[1].result["answers"] == 21


async def projector_state(client, session_id) -> dict:
    status, state, _ = await client.request("GET", f"/api/v1/live-sessions/{session_id}")
    assert status == 200, state
    return state


async def raw_get(host, port, path, headers: dict) -> str:
    """The body of a 200 answer to GET ``path`` (HTTP/1.0: the server closes when done)."""
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"GET {path} HTTP/1.0", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    return body.decode()
