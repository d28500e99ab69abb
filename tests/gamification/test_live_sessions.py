"""Live sessions as a teacher and a class run them, through the API: lobby, rounds for everyone at
once, the class's fused label, pause/skip/kick, late join and reconnect, the report."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from annotations.models import Annotation, GoldStandard
from gamification import live_sessions, services
from gamification.models import (
    Assignment,
    ClassMember,
    Classroom,
    LiveRound,
    LiveSession,
    PracticeTask,
    RoundTask,
    Submission,
)
from inference.engine import rle
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import GOLD, campaign_make, square, submission_body

pytestmark = pytest.mark.django_db


def pupils_make(classroom: Classroom, count: int, start: int = 0) -> list[User]:
    pupils = []
    for i in range(start, start + count):
        pupil = UserFactory(username=f"pupil{classroom.pk}-{i}", role="pupil", email="", pseudonym=f"otter-{i:04d}")
        ClassMember.objects.create(classroom=classroom, pupil=pupil, real_name=f"Child Number {i}")
        pupils.append(pupil)
    return pupils


@pytest.fixture
def teacher(db) -> User:
    return UserFactory(username="tom", role="teacher")


@pytest.fixture
def lesson(alice, teacher):
    """A public campaign of 8 images (3 hidden checks, 1 practice image) and a class of 4 pupils."""
    game = campaign_make(alice, images=8, golds=4)
    practice_task = sorted(game.gold_task_ids, key=str)[0]
    live_sessions.practice_task_mark(task=GoldStandard.objects.get(task_id=practice_task).task, by=alice)
    classroom = Classroom.objects.create(teacher=teacher, name="Year 9 Biology")
    Assignment.objects.create(
        classroom=classroom, campaign=game.campaign, target_tasks=10, due_at=timezone.now() + timedelta(days=7)
    )
    pupils = pupils_make(classroom, 4)
    checks = game.gold_task_ids - {practice_task}
    return game.campaign, classroom, pupils, practice_task, checks


def open_session(teacher, campaign, classroom, **extra) -> dict:
    response = client_for(teacher).post(
        "/api/v1/live-sessions", {"classroom": classroom.pk, "campaign": campaign.pk, **extra}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def join(pupil, code: str):
    return client_for(pupil).post("/api/v1/live-sessions/join", {"code": code}, format="json")


def control(teacher, session_id, action: str, **extra):
    return client_for(teacher).post(
        f"/api/v1/live-sessions/{session_id}/control", {"action": action, **extra}, format="json"
    )


def answer(pupil, session_id, number: int, mask, key: str | None = None, time_spent_ms: int = 8000):
    return client_for(pupil).post(
        f"/api/v1/live-sessions/{session_id}/rounds/{number}/submit",
        submission_body(mask, time_spent_ms=time_spent_ms),
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


def backdate(session_id, seconds: int = 30) -> None:
    """Pretend the running round started ``seconds`` ago (drawing times must be plausible)."""
    live_round = LiveRound.objects.get(session_id=session_id, closed_at__isnull=True)
    shift = timedelta(seconds=seconds)
    LiveRound.objects.filter(pk=live_round.pk).update(
        started_at=live_round.started_at - shift, ends_at=live_round.ends_at - shift
    )
    for answer_ in live_round.answers.select_related("round"):
        game_round = answer_.round
        game_round.created_at -= shift
        game_round.expires_at -= shift
        game_round.save(update_fields=["created_at", "expires_at"])


def time_up(session_id) -> None:
    """The running round's time and grace are over; the next read closes it."""
    live_round = LiveRound.objects.get(session_id=session_id, closed_at__isnull=True)
    past = timezone.now() - timedelta(seconds=live_sessions.LATE_GRACE_S + 1)
    LiveRound.objects.filter(pk=live_round.pk).update(ends_at=past)


def test_a_lesson_runs_from_lobby_to_report(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom, round_seconds=30)
    assert session["state"] == "lobby" and len(session["code"]) == 6 and session["code"].isdigit()
    for pupil in pupils:
        response = join(pupil, session["code"])
        assert response.status_code == 200, response.json()
        assert response.json()["me"]["pseudonym"] == pupil.pseudonym
    lobby = client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}").json()
    assert [p["pseudonym"] for p in lobby["participants"]] == [p.pseudonym for p in pupils]
    assert "Child Number" not in str(lobby)  # real names are for the report only

    # Round 1: everyone gets the same image at once; the practice image comes first.
    started = control(teacher, session["id"], "start").json()
    assert started["state"] == "round" and started["current_round"]["round"] == 1
    assert started["current_round"]["task"] == str(practice_task)
    backdate(session["id"])
    states = [client_for(p).get(f"/api/v1/live-sessions/{session['id']}").json() for p in pupils]
    assert {s["current_round"]["task"] for s in states} == {str(practice_task)}
    masks = [GOLD, square(9, 11, 38, 30), square(12, 10, 41, 29), square(0, 0, 8, 8)]
    for pupil, mask, state in zip(pupils, masks, states, strict=True):
        response = answer(pupil, session["id"], 1, mask)
        assert response.status_code == 201, response.json()
        assert response.json()["round"] == state["current_round"]["my_round"]
    assert client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}").json()["answers"] == 4
    time_up(session["id"])
    results = client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}").json()
    assert results["state"] == "results"
    closed = results["rounds"][0]
    assert closed["closed"] and closed["answers"] == 4
    # The class's fused label is the three careful pupils' square; the odd one out scores lowest.
    live_round = LiveRound.objects.get(session_id=session["id"], number=1)
    fused = rle.decode(live_round.result["fused"])
    assert (fused & GOLD).sum() / GOLD.sum() > 0.9 and not fused[0:8, 0:8].all()
    assert closed["leaderboard"][-1]["pseudonym"] == pupils[3].pseudonym
    assert closed["expert"]["dice"] > 0.9  # a practice image: the class against the expert outline
    assert sum(closed["spread"]["quality_counts"]) == 4
    overlay = client_for(teacher).get(closed["overlay_url"])
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/png"
    # Every answer is an ordinary annotation of the task (research labels), one per pupil.
    assert Annotation.objects.filter(task_id=practice_task).count() == 4

    # Round 2 on an ordinary image: no expert outline.
    second = control(teacher, session["id"], "start").json()["current_round"]
    assert second["round"] == 2 and second["task"] != str(practice_task)
    backdate(session["id"])
    for i, pupil in enumerate(pupils[:3]):
        assert answer(pupil, session["id"], 2, square(5 + i, 5, 30, 25)).status_code == 201
    ended = control(teacher, session["id"], "end").json()
    assert ended["state"] == "ended" and ended["rounds"][1]["expert"] is None

    report = client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}/report").json()
    assert [i["round"] for i in report["images"]] == [1, 2]
    assert report["images"][0]["practice"] and not report["images"][1]["practice"]
    assert report["class_vs_expert_mean_dice"] > 0.9
    by_name = {p["real_name"]: p for p in report["pupils"]}
    assert by_name["Child Number 3"]["answered"] == 1 and by_name["Child Number 0"]["answered"] == 2
    assert report["most_confused"][0] in (1, 2)
    download = client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}/report?download=csv")
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert len(rows) == 8 and {r["real_name"] for r in rows} == {f"Child Number {i}" for i in range(4)}


def test_live_rounds_never_show_a_hidden_check(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    join(pupils[0], session["code"])
    shown = []
    while True:
        response = control(teacher, session["id"], "start")
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "campaign_exhausted"
            break
        shown.append(uuid.UUID(response.json()["current_round"]["task"]))
        control(teacher, session["id"], "skip")
    assert len(shown) == 8 - len(checks)  # every image but the hidden checks
    assert not set(shown) & checks
    # The pupils' one-task rounds are ordinary rounds: no check among them either.
    assert not RoundTask.objects.filter(round__player=pupils[0], is_gold=True).exists()


def test_a_practice_task_is_never_a_hidden_check_in_ordinary_play(lesson, volunteer):
    campaign, classroom, pupils, practice_task, checks = lesson
    services.campaign_join(player=volunteer, campaign=campaign)
    handed_out = {}
    for seed in range(2):
        game_round = services.round_start(player=volunteer, campaign=campaign, seed=seed)
        handed_out.update({rt.task_id: rt.is_gold for rt in game_round.round_tasks.all()})
    assert handed_out.get(practice_task, False) is False
    assert all(handed_out[t] for t in checks if t in handed_out)


def test_the_class_sees_pseudonyms_and_no_one_elses_masks(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    for pupil in pupils[:2]:
        join(pupil, session["code"])
    control(teacher, session["id"], "start")
    backdate(session["id"])
    answer(pupils[0], session["id"], 1, GOLD)
    answer(pupils[1], session["id"], 1, square(10, 10, 36, 30))
    time_up(session["id"])
    state = client_for(pupils[1]).get(f"/api/v1/live-sessions/{session['id']}").json()
    text = str(state)
    assert pupils[0].pseudonym in text and "Child Number" not in text and pupils[0].username not in text
    assert "fused" not in text and "expert" not in text and "'size'" not in text  # no masks, no outlines
    assert state["rounds"][0]["my_points"] is not None
    # The overlay (the class's mask and the expert outline) is the teacher's.
    overlay = f"/api/v1/live-sessions/{session['id']}/rounds/1/overlay.png"
    assert client_for(pupils[0]).get(overlay).status_code == 404


def test_a_pupil_of_another_class_is_not_found(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    other_class = Classroom.objects.create(teacher=teacher, name="Year 8")
    outsider = pupils_make(other_class, 1, start=50)[0]
    response = join(outsider, session["code"])
    assert response.status_code == 404 and response.json()["error"]["code"] == "wrong_code"
    assert join(pupils[0], "000000" if session["code"] != "000000" else "111111").json() == response.json()
    join(pupils[0], session["code"])
    control(teacher, session["id"], "start")
    assert client_for(outsider).get(f"/api/v1/live-sessions/{session['id']}").status_code == 404
    assert answer(outsider, session["id"], 1, GOLD).status_code == 404
    assert not Submission.objects.filter(player=outsider).exists()


def test_a_teacher_of_another_class_is_not_found(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    tina = UserFactory(username="tina", role="teacher")
    base = f"/api/v1/live-sessions/{session['id']}"
    assert control(tina, session["id"], "start").status_code == 404
    assert client_for(tina).get(base).status_code == 404
    assert client_for(tina).get(f"{base}/report").status_code == 404
    response = client_for(tina).post(
        "/api/v1/live-sessions", {"classroom": classroom.pk, "campaign": campaign.pk}, format="json"
    )
    assert response.status_code == 404
    assert LiveSession.objects.get(pk=session["id"]).state == "lobby"


def test_joining_a_full_or_ended_session_is_refused_clearly(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom, capacity=2)
    assert join(pupils[0], session["code"]).status_code == 200
    assert join(pupils[1], session["code"]).status_code == 200
    full = join(pupils[2], session["code"])
    assert full.status_code == 409 and full.json()["error"]["code"] == "session_full"
    assert join(pupils[1], session["code"]).status_code == 200  # rejoining is not joining again
    control(teacher, session["id"], "end")
    ended = join(pupils[3], session["code"])
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "session_closed"
    assert LiveSession.objects.get(pk=session["id"]).participants.count() == 2


def test_bad_controls_change_nothing(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    assert control(teacher, session["id"], "pause").json()["error"]["code"] == "no_round"
    assert control(teacher, session["id"], "explode").status_code == 400
    assert control(teacher, session["id"], "kick").status_code == 400
    assert control(teacher, session["id"], "kick", participant=999999).status_code == 404
    bad = client_for(teacher).post(
        "/api/v1/live-sessions", {"classroom": classroom.pk, "campaign": campaign.pk, "round_seconds": 1}, format="json"
    )
    assert bad.status_code == 400
    assert LiveSession.objects.count() == 1 and LiveSession.objects.get().state == "lobby"


def test_wrong_codes_are_rate_limited(lesson):
    campaign, classroom, pupils, practice_task, checks = lesson
    for _ in range(20):
        assert join(pupils[0], "999999").status_code == 404
    assert join(pupils[0], "999999").status_code == 429


def test_late_join_and_reconnect_keep_answers(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    join(pupils[0], session["code"])
    control(teacher, session["id"], "start")
    backdate(session["id"])
    key = "answer-key-0001"
    first = answer(pupils[0], session["id"], 1, GOLD, key=key)
    assert first.status_code == 201
    # The phone drops and comes back: same participant, the answer is still there.
    again = join(pupils[0], session["code"]).json()
    assert again["current_round"]["submitted"] is True
    replay = answer(pupils[0], session["id"], 1, GOLD, key=key)  # the retried request
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    second = answer(pupils[0], session["id"], 1, square(0, 0, 20, 20))
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_submitted"
    # A pupil who comes in late plays the running round.
    late = join(pupils[1], session["code"]).json()
    assert late["current_round"]["round"] == 1 and late["current_round"]["submitted"] is False
    backdate(session["id"])
    assert answer(pupils[1], session["id"], 1, square(10, 10, 39, 30)).status_code == 201
    assert Submission.objects.filter(round_task__task_id=practice_task).count() == 2


def test_pause_stops_the_clock_and_skip_closes_without_results(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom, round_seconds=30)
    join(pupils[0], session["code"])
    join(pupils[1], session["code"])
    control(teacher, session["id"], "start")
    backdate(session["id"], seconds=10)
    paused = control(teacher, session["id"], "pause").json()
    assert paused["state"] == "paused" and 15 < paused["current_round"]["seconds_left"] <= 20
    time_up(session["id"])  # a long pause: the round's old end passes
    assert client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}").json()["state"] == "paused"
    response = answer(pupils[0], session["id"], 1, GOLD)
    assert response.status_code == 201 and response.json()["on_time"] is True
    resumed = control(teacher, session["id"], "resume").json()
    assert resumed["state"] == "round" and 15 < resumed["current_round"]["seconds_left"] <= 20
    skipped = control(teacher, session["id"], "skip").json()
    assert skipped["state"] == "results" and skipped["rounds"][0]["skipped"]
    assert skipped["rounds"][0]["leaderboard"] == [] and skipped["rounds"][0]["answers"] == 0
    # An answer that arrives after the round closed is kept, late: no points, not in the results.
    late = answer(pupils[1], session["id"], 1, square(0, 0, 9, 9))
    assert late.status_code == 201 and late.json()["on_time"] is False and late.json()["points"] == 0
    assert Submission.objects.get(player=pupils[1]).flag == Submission.Flag.LATE
    assert LiveRound.objects.get(session_id=session["id"], number=1).result == {}


def test_a_kicked_pupil_cannot_rejoin_and_their_answers_stay(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    participant = join(pupils[0], session["code"]).json()["me"]["participant"]
    control(teacher, session["id"], "start")
    backdate(session["id"])
    answer(pupils[0], session["id"], 1, GOLD)
    kicked = control(teacher, session["id"], "kick", participant=participant).json()
    assert kicked["participants"][0]["kicked"] is True
    again = join(pupils[0], session["code"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "removed"
    assert client_for(pupils[0]).get(f"/api/v1/live-sessions/{session['id']}").status_code == 404
    assert Submission.objects.filter(player=pupils[0]).count() == 1
    time_up(session["id"])
    closed = client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}").json()
    assert closed["rounds"][0]["leaderboard"] == []  # out of the class's results


def test_a_session_needs_a_campaign_assigned_to_the_class(lesson, teacher, alice):
    campaign, classroom, pupils, practice_task, checks = lesson
    unassigned = campaign_make(alice).campaign  # public, but not the class's
    response = client_for(teacher).post(
        "/api/v1/live-sessions", {"classroom": classroom.pk, "campaign": unassigned.pk}, format="json"
    )
    assert response.status_code == 404
    assert not LiveSession.objects.exists()


def test_the_projector_page_is_the_teachers(lesson, teacher):
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    join(pupils[0], session["code"])
    url = f"/live/{session['id']}/projector"

    def browser(user):
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    page = browser(teacher).get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert session["code"] in html and pupils[0].pseudonym in html and "Child Number" not in html
    assert browser(pupils[0]).get(url).status_code == 404
    assert browser(UserFactory(username="tina", role="teacher")).get(url).status_code == 404
    signed_out = browser(None).get(url)
    assert signed_out.status_code == 401 and session["code"] not in signed_out.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_round_reaches_every_pupils_socket_and_answers_come_back(lesson, teacher):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from crowdseg.asgi import application

    campaign, classroom, pupils, practice_task, checks = lesson
    session = live_sessions.live_session_open(teacher=teacher, classroom=classroom, campaign=campaign)

    async def socket(user):
        communicator = WebsocketCommunicator(application, "/ws/v1/play", headers=[(b"origin", b"http://localhost")])
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        return communicator

    async def until(communicator, event_type):
        while True:
            message = await communicator.receive_json_from(timeout=30)
            if message["type"] == event_type:
                return message

    async def lesson_over_sockets():
        board = await socket(teacher)
        await board.send_json_to({"type": "live.watch", "id": "t1", "session": str(session.pk)})
        assert (await until(board, "live.state"))["state"]["code"] == session.code
        phones, joined = [], []
        for pupil in pupils:
            phone = await socket(pupil)
            await phone.send_json_to({"type": "live.join", "id": "j", "code": session.code})
            assert (await until(phone, "live.state"))["state"]["me"]["pseudonym"] == pupil.pseudonym
            joined.append(await until(board, "live.joined"))  # who joined, on the projector
            assert joined[-1]["pseudonym"] == pupil.pseudonym
            phones.append(phone)
        await board.send_json_to({"type": "live.control", "id": "t2", "session": str(session.pk), "action": "start"})
        started = [await until(phone, "live.round_started") for phone in phones]
        assert {s["task"] for s in started} == {str(practice_task)} and {s["round"] for s in started} == {1}
        body = submission_body(GOLD, time_spent_ms=1500)
        message = {"type": "live.submit", "id": "s1", "session": str(session.pk), "round": 1, **body}
        await phones[0].send_json_to({**message, "idempotency_key": "socket-key-01"})
        submitted = await until(phones[0], "live.submitted")
        assert submitted["id"] == "s1" and submitted["status"] == 201
        await board.send_json_to(
            {
                "type": "live.control",
                "id": "t3",
                "session": str(session.pk),
                "action": "kick",
                "participant": joined[1]["participant"],
            }
        )
        assert (await until(phones[1], "live.kicked"))["session"] == str(session.pk)
        await board.send_json_to({"type": "live.control", "id": "t4", "session": str(session.pk), "action": "skip"})
        assert (await until(phones[0], "live.round_closed"))["skipped"] is True
        heard = []  # a kicked phone hears the session no more (its own round's settlement, yes)
        while not await phones[1].receive_nothing(timeout=0.5):
            heard.append((await phones[1].receive_json_from())["type"])
        assert not [t for t in heard if t.startswith("live.")], heard
        for communicator in [board, *phones]:
            await communicator.disconnect()

    async_to_sync(lesson_over_sockets)()
    assert Submission.objects.filter(round_task__task_id=practice_task).count() == 1


def test_a_class_bigger_than_the_engines_limit_still_fuses_for_research(lesson, teacher):
    """A whole class on one image gives it more annotations than the engine fuses per image: the
    crowd's label is made of the first ``fusion.MAX_VOTERS`` voters and counts them all."""
    from annotations import consensus, fusion
    from annotations.models import FusedLabel

    campaign, classroom, pupils, practice_task, checks = lesson
    pupils += pupils_make(classroom, fusion.MAX_VOTERS + 4 - len(pupils), start=len(pupils))
    session = open_session(teacher, campaign, classroom)
    for pupil in pupils:
        join(pupil, session["code"])
    control(teacher, session["id"], "start")
    backdate(session["id"])
    for i, pupil in enumerate(pupils):
        assert answer(pupil, session["id"], 1, square(10 + i % 3, 10, 40, 30)).status_code == 201
    time_up(session["id"])
    closed = client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}").json()["rounds"][0]
    assert closed["answers"] == len(pupils) and len(closed["leaderboard"]) == live_sessions.LEADERBOARD_SIZE
    consensus.fusion_run(label_class=campaign.label_classes.get())
    fused = FusedLabel.objects.get(task_id=practice_task)
    assert fused.votes == fusion.MAX_VOTERS and fused.annotation_count == len(pupils)
    assert not consensus.tasks_needing_fusion(campaign.label_classes.get()).filter(pk=practice_task).exists()


def test_a_researcher_makes_expert_outlines_teaching_material_in_the_admin(alice, charlie):
    from accounts.services import user_role_set

    alice, charlie = (user_role_set(user=u, role="researcher") for u in (alice, charlie))  # admin permissions
    game = campaign_make(alice, images=4, golds=2)
    golds = list(GoldStandard.objects.filter(task__in=game.gold_task_ids))
    form = {"action": "use_for_teaching", "_selected_action": [g.pk for g in golds]}
    outsider = Client()
    outsider.force_login(charlie)
    outsider.post("/admin/annotations/goldstandard/", form)
    assert not PracticeTask.objects.exists()  # not his dataset: nothing to act on
    owner = Client()
    owner.force_login(alice)
    assert owner.post("/admin/annotations/goldstandard/", form).status_code == 302
    assert set(PracticeTask.objects.values_list("task_id", flat=True)) == game.gold_task_ids


def test_pupils_rounds_settle_together_when_the_live_round_closes(
    lesson, teacher, django_capture_on_commit_callbacks, celery_in_process
):
    from gamification.models import Round

    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    for pupil in pupils[:2]:
        join(pupil, session["code"])
    control(teacher, session["id"], "start")
    backdate(session["id"])
    with django_capture_on_commit_callbacks(execute=True):
        for i, pupil in enumerate(pupils[:2]):
            assert answer(pupil, session["id"], 1, square(10 + i, 10, 40, 30)).status_code == 201
    rounds = Round.objects.filter(live_answer__live_round__session_id=session["id"])
    assert rounds.count() == 2 and not rounds.filter(settled=True).exists()  # no job per pupil
    time_up(session["id"])
    with django_capture_on_commit_callbacks(execute=True):
        client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}")  # the projector's read closes it
    assert rounds.filter(settled=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_socket_misses_nothing_said_while_it_joins_or_watches(lesson, teacher, monkeypatch):
    """The teacher starts the round just as a phone's join is answered, a pupil joins just as the
    projector's state is read: each screen has it in its state or hears it (before the fix, the
    socket followed the session only after reading its state, and the event was lost)."""
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from crowdseg.asgi import application
    from gamification.api import live_sessions as live_api

    campaign, classroom, pupils, practice_task, checks = lesson
    session = live_sessions.live_session_open(teacher=teacher, classroom=classroom, campaign=campaign)
    for pupil in pupils[:2]:
        live_sessions.live_session_join(pupil=pupil, code=session.code)
    teacher_state, pupil_state = live_api.teacher_state, live_api.pupil_state
    once = {"teacher": True, "pupil": True}

    def teacher_state_then_a_pupil_joins(session_):
        state = teacher_state(session_)
        if once.pop("teacher", False):
            live_sessions.live_session_join(pupil=pupils[2], code=session.code)
        return state

    def pupil_state_then_the_round_starts(session_, participant, request=None):
        state = pupil_state(session_, participant, request)
        if once.pop("pupil", False):
            live_sessions.live_session_control(session=LiveSession.objects.get(pk=session.pk), action="start")
        return state

    monkeypatch.setattr(live_api, "teacher_state", teacher_state_then_a_pupil_joins)
    monkeypatch.setattr(live_api, "pupil_state", pupil_state_then_the_round_starts)

    async def socket(user):
        communicator = WebsocketCommunicator(application, "/ws/v1/play", headers=[(b"origin", b"http://localhost")])
        communicator.scope["user"] = user
        assert (await communicator.connect())[0]
        return communicator

    async def answer_and_events(communicator, request) -> tuple[dict, list[dict]]:
        await communicator.send_json_to(request)
        answer, heard = None, []
        while answer is None or not await communicator.receive_nothing(timeout=0.5):
            message = await communicator.receive_json_from(timeout=30)
            if message.get("id") == request["id"]:
                answer = message
            else:
                heard.append(message)
        return answer, heard

    async def screens():
        board = await socket(teacher)
        watched, heard = await answer_and_events(board, {"type": "live.watch", "id": "w", "session": str(session.pk)})
        in_state = {p["pseudonym"] for p in watched["state"]["participants"]}
        joined = {e["pseudonym"] for e in heard if e["type"] == "live.joined"}
        assert pupils[2].pseudonym in in_state | joined

        phone = await socket(pupils[3])
        state, heard = await answer_and_events(phone, {"type": "live.join", "id": "j", "code": session.code})
        current = state["state"]["current_round"]
        started = [e for e in heard if e["type"] == "live.round_started"]
        assert (current and current["round"] == 1) or [e["round"] for e in started] == [1]
        for communicator in (board, phone):
            await communicator.disconnect()

    async_to_sync(screens)()


def test_an_answer_costs_the_server_a_dozen_statements(lesson, teacher, django_assert_max_num_queries):
    """A class's answers arrive within seconds, each on the server's one database thread, and each
    statement is a round trip (``bench/classroom_live.py``): the rules' reads are one statement."""
    campaign, classroom, pupils, practice_task, checks = lesson
    session = open_session(teacher, campaign, classroom)
    for pupil in pupils:
        assert join(pupil, session["code"]).status_code == 200
    for number, mask in ((1, square(9, 11, 38, 30)), (2, square(12, 10, 41, 29))):
        assert control(teacher, session["id"], "start").status_code == 200
        backdate(session["id"])
        # The first answer also makes the pupil's stats row and first badge; later ones only add.
        with django_assert_max_num_queries(18 if number == 1 else 12):
            outcome = live_sessions.live_answer_submit(
                pupil=pupils[0],
                session_id=session["id"],
                number=number,
                data=submission_body(mask),
                idempotency_key=uuid.uuid4().hex,
            )
        assert outcome.status == 201 and not outcome.replayed
        time_up(session["id"])
        assert client_for(teacher).get(f"/api/v1/live-sessions/{session['id']}").json()["state"] == "results"
