"""Live sessions: a lesson paced from the front of the room.

A teacher opens a session on a campaign for one of their classes; pupils of that class join with
its 6-digit code (``live_session_join``, which is also how a pupil whose phone dropped gets back
in); the teacher starts each round for everyone at once (``live_round_start``): the whole class
gets the same image, so their masks fuse into one label. A round closes when its time is up (a
worker job, or whoever reads the session next) or when the teacher skips it; closing fuses the
class's answers with the fusion engine (``class_fusion``) and scores each pupil against the
class's label (``live_round_close``). The projector then shows the fused mask over the image, the
spread of answers and the round's leaderboard by pseudonym.

Rules a pupil's client cannot see, decided here and documented in the README:

- **No hidden check is ever a live round's image.** Rounds draw practice tasks (``PracticeTask``:
  expert outlines meant for teaching) first, then ordinary tasks; the expert outline is shown
  only for practice tasks. So nothing a class sees tells a check from another task.
- **Answers take the ordinary path.** Each pupil's place in a round is a one-task game ``Round``
  (``LiveAnswer``), and an answer is a ``services.submission_submit``: durable, idempotent under
  retries, fused with the rest of the crowd's annotations for research. A pupil who rejoins keeps
  every answer; a pupil who joins late plays from the current round on.
- **Pseudonyms only** in what the class and the projector see; real names only in the teacher's
  report (``live_session_report``).
- A kicked pupil cannot rejoin that session; what they already drew stays (research labels).
- An answer that arrives after its round closed is stored as a late submission (no points, not
  in the class's results), as in ordinary play.

Every state change announces itself on the session's group (``crowdseg.events``); everything an
event says can also be read over REST (``live_session_state``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import User
from annotations import fusion
from annotations.models import SuggestionUse, Task
from crowdseg import events
from crowdseg.errors import Conflict, DomainError, NotFound
from inference.engine import rle

from . import class_fusion, scoring, services
from .classroom_services import join_failure_record, join_failures_check
from .models import (
    Assignment,
    Campaign,
    ClassMember,
    Classroom,
    LiveAnswer,
    LiveParticipant,
    LiveRound,
    LiveSession,
    PracticeTask,
    Round,
    RoundTask,
    Submission,
)

LATE_GRACE_S = 2  # answers sent in the round's last moment still count: the network takes time
PAUSED_HOLD = timedelta(days=1)  # a paused round's answers are not late while it waits
ROUND_SECONDS_RANGE = (10, 600)
CAPACITY_RANGE = (1, 100)
SPREAD_BINS = (0.2, 0.4, 0.6, 0.8)  # quality bin edges of the spread histogram
LEADERBOARD_SIZE = 10
FUSED_WITH_EARLIER = 10  # closed rounds of the lesson fused with the one closing
State = LiveSession.State
Action = ("start", "pause", "resume", "skip", "end", "kick")


# -- reads with their access rules -------------------------------------------------------------


def live_session_get_for_teacher(*, user: User, session_id) -> LiveSession:
    """A session of one of ``user``'s classes, or NotFound (the same for someone else's)."""
    session = (
        LiveSession.objects.select_related("classroom", "campaign")
        .filter(pk=session_id, classroom__teacher=user)
        .first()
    )
    if session is None:
        raise NotFound("no such live session")
    return session


def live_session_get_for_pupil(*, user: User, session_id) -> tuple[LiveSession, LiveParticipant]:
    """A session ``user`` joined (and was not kicked from), or NotFound."""
    participant = (
        LiveParticipant.objects.select_related("session__campaign", "session__classroom")
        .filter(session_id=session_id, pupil=user, kicked_at__isnull=True)
        .first()
    )
    if participant is None:
        raise NotFound("no such live session")
    return participant.session, participant


# -- the teacher's actions ---------------------------------------------------------------------


def live_session_open(
    *, teacher: User, classroom: Classroom, campaign: Campaign, round_seconds: int = 60, capacity: int = 40
) -> LiveSession:
    """Open a session (in its lobby) on ``campaign`` for ``classroom``, which ``teacher`` must
    teach (NotFound otherwise). The campaign must be assigned to the class (pupils play only
    their classes' campaigns)."""
    if classroom.teacher_id != teacher.pk:
        raise NotFound("no such class")
    if not Assignment.objects.filter(classroom=classroom, campaign=campaign).exists():
        raise NotFound("no such campaign for this class: assign it to the class first")
    _in_range("round_seconds", round_seconds, ROUND_SECONDS_RANGE)
    _in_range("capacity", capacity, CAPACITY_RANGE)
    for _ in range(5):  # a code collides with an open session's about once in 10**6 / open sessions
        try:
            with transaction.atomic():
                return LiveSession.objects.create(
                    classroom=classroom, campaign=campaign, round_seconds=round_seconds, capacity=capacity
                )
        except IntegrityError:
            continue
    raise Conflict("could not find a free session code; try again", code="code_unavailable")


def _in_range(name: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DomainError(f"{name} must be a whole number from {low} to {high}", fields={name: [f"{low}-{high}"]})


def live_session_control(
    *, session: LiveSession, action: str, participant_id: int | None = None, now: datetime | None = None
) -> LiveSession:
    """The teacher's buttons: ``start`` the next round (from the lobby or a round's results),
    ``pause``/``resume`` the running round's clock, ``skip`` the running round (closed without
    results), ``end`` the session, ``kick`` a participant. Conflict when the session's state does
    not allow the action."""
    now = now or timezone.now()
    if action not in Action:
        raise DomainError(f"action must be one of {', '.join(Action)}", fields={"action": ["unknown"]})
    live_session_tick(session=session, now=now)
    session.refresh_from_db()
    if action == "start":
        live_round_start(session=session, now=now)
    elif action == "pause":
        _pause(session, now)
    elif action == "resume":
        _resume(session, now)
    elif action == "skip":
        current = live_round_running(session)
        if session.state not in (State.ROUND, State.PAUSED) or current is None:
            raise Conflict("no round is running", code="no_round")
        live_round_close(live_round=current, skipped=True, now=now)
    elif action == "end":
        _end(session, now)
    else:
        _kick(session, participant_id, now)
    session.refresh_from_db()
    return session


def live_round_start(*, session: LiveSession, now: datetime | None = None) -> LiveRound:
    """Start the next round for the whole class: one image (practice tasks first, never a hidden
    check), the same for everyone, ``session.round_seconds`` long. Announces ``live.round_started``
    to the session (the image, the label class, when it ends)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().get(pk=session.pk)
        if locked.state not in (State.LOBBY, State.RESULTS):
            raise Conflict(f"cannot start a round while the session is {locked.state}", code="session_busy")
        number = locked.rounds.count() + 1
        task = _task_pick(locked, number)
        live_round = LiveRound.objects.create(
            session=locked,
            number=number,
            task=task,
            started_at=now,
            ends_at=now + timedelta(seconds=locked.round_seconds),
        )
        locked.state = State.ROUND
        locked.save(update_fields=["state"])
        _answer_rounds_make(live_round, list(locked.participants.filter(kicked_at__isnull=True)))
        events.publish_group(events.session_group(session.pk), "live.round_started", round_event(live_round))
    transaction.on_commit(lambda: _close_later(live_round))
    return live_round


def round_event(live_round: LiveRound) -> dict:
    """What every pupil is told about a round: the same for everyone, and for every kind of task."""
    task = live_round.task
    image, label_class = task.image, task.label_class
    return {
        "session": str(live_round.session_id),
        "round": live_round.number,
        "task": str(task.pk),
        "image": {"url": image.display.url, "width": image.width, "height": image.height},
        "label_class": {"id": label_class.pk, "name": label_class.name, "color": label_class.color},
        "instructions": label_class.instructions,
        "started_at": live_round.started_at.isoformat(),
        "ends_at": live_round.ends_at.isoformat(),
    }


def _task_pick(session: LiveSession, number: int) -> Task:
    """The round's task: an image this session has not shown yet, practice tasks first, then the
    ordinary tasks the crowd needs most (``services.rank_by_need``); never a hidden check."""
    shown = LiveRound.objects.filter(session=session).values("task__image_id")
    rows = list(
        Task.objects.filter(label_class__in=session.campaign.label_classes.all())
        .exclude(image__in=shown)
        .filter(Q(gold__isnull=True) | Q(practice__isnull=False))
        .annotate(assigned=Count("round_tasks"))
        .values("id", "image_id", "assigned", "practice__id", "fused__gain", "fused__settled")
    )
    if not rows:
        raise Conflict("this campaign has no image left for this session", code="campaign_exhausted")
    rng = random.Random(f"{session.pk}:{number}")
    rows.sort(key=lambda row: str(row["id"]))
    practice = [row for row in rows if row["practice__id"] is not None]
    if practice:
        return Task.objects.select_related("image", "label_class").get(pk=rng.choice(practice)["id"])
    candidates = [
        services.Candidate(
            task_id=row["id"],
            image_id=row["image_id"],
            assigned=row["assigned"],
            gain=1.0 if row["fused__gain"] is None else row["fused__gain"],
            settled=bool(row["fused__settled"]),
        )
        for row in rows
    ]
    best = services.rank_by_need(session.campaign, candidates, rng)[0]
    return Task.objects.select_related("image", "label_class").get(pk=best.task_id)


def _close_later(live_round: LiveRound) -> None:
    """A worker closes the round when its time is up (with the embedded default's in-process
    tasks there is no worker to wait: reads close it then, ``live_session_tick``)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return
    from . import tasks  # the Celery tasks import this module

    delay = max(0.0, (live_round.ends_at - timezone.now()).total_seconds()) + LATE_GRACE_S
    tasks.live_round_close.apply_async((live_round.pk,), countdown=delay)


def live_session_tick(*, session: LiveSession, now: datetime | None = None) -> bool:
    """Close the running round if its time (and the grace) is up. True if it closed one."""
    now = now or timezone.now()
    if session.state != State.ROUND:
        return False
    current = live_round_running(session)
    if current is None or now < current.ends_at + timedelta(seconds=LATE_GRACE_S):
        return False
    return live_round_close(live_round=current, now=now)


def live_round_close_due(*, live_round_id: int, now: datetime | None = None) -> bool:
    """The worker's job: close the round if it is still running and its time is up (a paused or
    resumed round is closed by a later job or read). Safe to run twice."""
    live_round = LiveRound.objects.select_related("session").filter(pk=live_round_id).first()
    if live_round is None:
        return False
    return live_session_tick(session=live_round.session, now=now)


def live_round_running(session: LiveSession) -> LiveRound | None:
    """The round not closed yet (running or paused), if any."""
    return session.rounds.filter(closed_at__isnull=True).select_related("task__image").order_by("-number").first()


def _pause(session: LiveSession, now: datetime) -> None:
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().get(pk=session.pk)
        current = live_round_running(locked)
        if locked.state != State.ROUND or current is None:
            raise Conflict("no round is running", code="no_round")
        remaining = max(0, int((current.ends_at - now).total_seconds() * 1000))
        locked.state, locked.paused_remaining_ms = State.PAUSED, remaining
        locked.save(update_fields=["state", "paused_remaining_ms"])
        Round.objects.filter(live_answer__live_round=current).update(expires_at=now + PAUSED_HOLD)
        events.publish_group(
            events.session_group(session.pk), "live.paused", {"session": str(session.pk), "round": current.number}
        )


def _resume(session: LiveSession, now: datetime) -> None:
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().get(pk=session.pk)
        current = live_round_running(locked)
        if locked.state != State.PAUSED or current is None:
            raise Conflict("the session is not paused", code="not_paused")
        current.ends_at = now + timedelta(milliseconds=locked.paused_remaining_ms or 0)
        current.save(update_fields=["ends_at"])
        locked.state, locked.paused_remaining_ms = State.ROUND, None
        locked.save(update_fields=["state", "paused_remaining_ms"])
        Round.objects.filter(live_answer__live_round=current).update(
            expires_at=current.ends_at + timedelta(seconds=LATE_GRACE_S)
        )
        events.publish_group(
            events.session_group(session.pk),
            "live.resumed",
            {"session": str(session.pk), "round": current.number, "ends_at": current.ends_at.isoformat()},
        )
    transaction.on_commit(lambda: _close_later(current))


def _end(session: LiveSession, now: datetime) -> None:
    current = live_round_running(session)
    if current is not None:
        live_round_close(live_round=current, now=now)
    with transaction.atomic():
        updated = (
            LiveSession.objects.filter(pk=session.pk)
            .exclude(state=State.ENDED)
            .update(state=State.ENDED, ended_at=now, paused_remaining_ms=None)
        )
        if not updated:
            raise Conflict("the session has ended", code="session_closed")
        events.publish_group(events.session_group(session.pk), "live.ended", {"session": str(session.pk)})


def _kick(session: LiveSession, participant_id, now: datetime) -> None:
    if not isinstance(participant_id, int) or isinstance(participant_id, bool):
        raise DomainError("kick needs a participant id", fields={"participant": ["required"]})
    with transaction.atomic():
        participant = LiveParticipant.objects.filter(session=session, pk=participant_id).first()
        if participant is None:
            raise NotFound("no such participant in this session")
        if participant.kicked_at is None:
            participant.kicked_at = now
            participant.save(update_fields=["kicked_at"])
            events.publish(participant.pupil_id, "live.kicked", {"session": str(session.pk)})
            events.publish_group(
                events.staff_group(session.pk), "live.left", {"session": str(session.pk), "participant": participant.pk}
            )


# -- the pupil's actions -----------------------------------------------------------------------


def live_session_join(*, pupil: User, code: str, now: datetime | None = None) -> tuple[LiveSession, LiveParticipant]:
    """Join (or rejoin) the open session with ``code``. A wrong code and a session of a class the
    pupil is not in get the same NotFound; a full or ended session a Conflict saying so; a
    kicked pupil a Conflict. A pupil's wrong codes are rate-limited like the class codes'
    (``classroom_services.JOIN_FAILURES`` per ``JOIN_FAILURE_WINDOW_S``)."""
    now = now or timezone.now()
    failures_key = f"live:join-failures:{pupil.pk}"
    join_failures_check(failures_key)
    code = "".join(str(code or "").split())
    session = None
    if len(code) == 6 and code.isdigit():
        session = (
            LiveSession.objects.select_related("campaign", "classroom")
            .filter(code=code, classroom__members__pupil=pupil)
            .order_by("-created_at")
            .first()
        )
    if session is None:
        join_failure_record(failures_key)
        raise NotFound("no open session has this code: check it with your teacher", code="wrong_code")
    if session.state == State.ENDED:
        raise Conflict("this session has ended", code="session_closed")
    with transaction.atomic():
        locked = LiveSession.objects.select_for_update().get(pk=session.pk)
        participant = LiveParticipant.objects.filter(session=locked, pupil=pupil).first()
        if participant is not None and participant.kicked_at is not None:
            raise Conflict("your teacher removed you from this session", code="removed")
        if locked.state == State.ENDED:
            raise Conflict("this session has ended", code="session_closed")
        if participant is None:
            present = LiveParticipant.objects.filter(session=locked, kicked_at__isnull=True).count()
            if present >= locked.capacity:
                raise Conflict("this session is full; ask your teacher", code="session_full")
            participant = LiveParticipant.objects.create(session=locked, pupil=pupil, joined_at=now)
            events.publish_group(
                events.staff_group(session.pk),
                "live.joined",
                {"session": str(session.pk), "participant": participant.pk, "pseudonym": pupil.pseudonym},
            )
    live_session_tick(session=locked, now=now)
    locked.refresh_from_db()
    current = live_round_running(locked)
    if current is not None:  # a late joiner plays the running round too
        live_answer_round(participant=participant, live_round=current)
    return locked, participant


def _answer_rounds_make(live_round: LiveRound, participants: list[LiveParticipant]) -> None:
    """Every present pupil's one-task round, made with the live round (three inserts in all), so
    each may see the image (``crowdseg.media``) and ask for suggestions from the first second."""
    expires_at = live_round.ends_at + timedelta(seconds=LATE_GRACE_S)
    campaign = live_round.session.campaign
    rounds = Round.objects.bulk_create(
        Round(campaign=campaign, player_id=p.pupil_id, created_at=live_round.started_at, expires_at=expires_at)
        for p in participants
    )
    RoundTask.objects.bulk_create(RoundTask(round=r, task_id=live_round.task_id, position=0) for r in rounds)
    LiveAnswer.objects.bulk_create(
        LiveAnswer(live_round=live_round, participant=p, round=r) for p, r in zip(participants, rounds, strict=True)
    )


def live_answer_round(*, participant: LiveParticipant, live_round: LiveRound) -> Round:
    """The pupil's one-task game round for ``live_round`` (made on first use: late joiners too)."""
    existing = Round.objects.filter(live_answer__live_round=live_round, live_answer__participant=participant).first()
    if existing is not None:
        return existing
    session = live_round.session
    paused = session.state == State.PAUSED and live_round.closed_at is None
    expires_at = (timezone.now() + PAUSED_HOLD) if paused else live_round.ends_at + timedelta(seconds=LATE_GRACE_S)
    try:
        with transaction.atomic():
            game_round = Round.objects.create(
                campaign=session.campaign,
                player=participant.pupil,
                created_at=live_round.started_at,
                expires_at=expires_at,
            )
            RoundTask.objects.create(round=game_round, task=live_round.task, position=0)
            LiveAnswer.objects.create(live_round=live_round, participant=participant, round=game_round)
    except IntegrityError:  # made concurrently by the pupil's other request
        return Round.objects.get(live_answer__live_round=live_round, live_answer__participant=participant)
    return game_round


def live_answer_submit(
    *,
    pupil: User,
    session_id,
    number: int,
    data: dict,
    idempotency_key: str | None,
    now: datetime | None = None,
) -> services.SubmitOutcome:
    """The pupil's mask for round ``number`` of the session, down the ordinary submission path
    (``services.submission_submit``: the same rules, answers and idempotency). NotFound for a
    session the pupil is not in. An answer that arrives after the round closed (a slow network, a
    busy server) is stored like any late submission, ``on_time: false``, no points and not in the
    class's results: nothing a pupil drew is lost."""
    now = now or timezone.now()
    # One query in the usual case: the pupil's place in the round, with the round and the session.
    place = (
        LiveAnswer.objects.select_related("live_round__session", "round")
        .filter(
            live_round__session_id=session_id,
            live_round__number=number,
            participant__pupil=pupil,
            participant__kicked_at__isnull=True,
        )
        .first()
    )
    if place is not None:
        live_round, game_round = place.live_round, place.round
    else:  # a round the pupil had no place in yet (they joined as it closed), or none at all
        session, participant = live_session_get_for_pupil(user=pupil, session_id=session_id)
        live_round = LiveRound.objects.select_related("session").filter(session=session, number=number).first()
        if live_round is None:
            raise NotFound("no such round in this session")
        game_round = live_answer_round(participant=participant, live_round=live_round)
    due = live_round.ends_at + timedelta(seconds=LATE_GRACE_S)
    if live_round.closed_at is None and live_round.session.state == State.ROUND and now >= due:
        live_round_close(live_round=live_round, now=now)  # its time is up: nobody closed it yet
        game_round.refresh_from_db()  # closing ended the pupil's round too: what comes now is late
    return services.submission_submit(
        player=pupil,
        round_id=game_round.pk,
        task_id=live_round.task_id,
        data=data,
        idempotency_key=idempotency_key,
        now=now,
    )


# -- closing a round ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    participant_id: int
    pseudonym: str
    mask: np.ndarray
    anchored: bool
    time_ms: int
    earns: bool


def live_round_close(*, live_round: LiveRound, skipped: bool = False, now: datetime | None = None) -> bool:
    """Close the round: fuse the class's answers (``class_fusion.class_labels``), score each pupil
    against the class's label (``scoring.quality``, ``scoring.points``), compare the label with the
    expert outline on practice tasks, store it all in ``live_round.result`` and announce
    ``live.round_closed``. A skipped round stores no result. True if this call closed it; safe to
    run twice and concurrently."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            LiveRound.objects.select_for_update()
            .select_related("session__campaign", "task__image")
            .get(pk=live_round.pk)
        )
        if locked.closed_at is not None:
            return False
        locked.closed_at, locked.skipped = now, skipped
        locked.result = {} if skipped else _round_result(locked)
        locked.save(update_fields=["closed_at", "skipped", "result"])
        LiveSession.objects.filter(pk=locked.session_id).exclude(state=State.ENDED).update(
            state=State.RESULTS, paused_remaining_ms=None
        )
        # Pupils' rounds end with the live round: their answers so far settle like any round's.
        Round.objects.filter(live_answer__live_round=locked, expires_at__gt=now).update(expires_at=now)
        events.publish_group(events.session_group(locked.session_id), "live.round_closed", closed_event(locked))
    from . import tasks  # the Celery tasks import this module

    transaction.on_commit(lambda: tasks.live_round_settle.delay(live_round.pk))
    return True


def closed_event(live_round: LiveRound) -> dict:
    """What the class is told when a round closes: counts, the spread and the leaderboard by
    pseudonym. The fused mask and the expert outline go to the projector only (as an image)."""
    result = live_round.result
    return {
        "session": str(live_round.session_id),
        "round": live_round.number,
        "skipped": live_round.skipped,
        "answers": result.get("answers", 0),
        "spread": result.get("spread"),
        "leaderboard": [
            {"pseudonym": s["pseudonym"], "points": s["points"]} for s in result.get("scores", [])[:LEADERBOARD_SIZE]
        ],
    }


def _round_answers(live_round: LiveRound) -> list[_Answer]:
    submissions = (
        Submission.objects.filter(
            round_task__round__live_answer__live_round=live_round,
            round_task__round__live_answer__participant__kicked_at__isnull=True,
        )
        .select_related("annotation", "player")
        .values_list(
            "round_task__round__live_answer__participant_id",
            "player__pseudonym",
            "annotation__mask",
            "annotation__suggestion_use",
            "annotation__time_spent_ms",
            "flag",
        )
    )
    return [
        _Answer(
            participant_id=pid,
            pseudonym=pseudonym,
            mask=rle.decode(mask),
            anchored=use == SuggestionUse.ACCEPTED,
            time_ms=time_ms,
            earns=flag in (Submission.Flag.NONE, Submission.Flag.BLANK),
        )
        for pid, pseudonym, mask, use, time_ms, flag in submissions
    ]


def _round_result(live_round: LiveRound) -> dict:
    answers = _round_answers(live_round)
    expert = _expert_mask(live_round.task)
    if not answers:
        return {"answers": 0, "scores": [], "spread": None, "fused": None, "expert": None}
    # The lesson's earlier rounds fuse along: they are the evidence of how each pupil draws.
    earlier = [
        r
        for r in live_round.session.rounds.filter(number__lt=live_round.number, closed_at__isnull=False, skipped=False)
        .select_related("task__image")
        .order_by("-number")[:FUSED_WITH_EARLIER]
    ]
    rounds = [(live_round, answers)] + [(r, _round_answers(r)) for r in earlier]
    fused = class_fusion.class_labels(
        [
            (
                (r.task.image.height, r.task.image.width),
                [fusion.Vote(str(a.participant_id), a.mask, anchored=a.anchored) for a in round_answers],
            )
            for r, round_answers in rounds
        ]
    )[0]
    label = fused.mask
    expected_ms = live_round.session.campaign.task_seconds * 1000
    scores = []
    for answer in answers:
        measured = scoring.quality(answer.mask, label)
        points = scoring.points(measured.value, answer.time_ms, expected_ms) if answer.earns else 0
        scores.append(
            {
                "participant": answer.participant_id,
                "pseudonym": answer.pseudonym,
                "quality": round(measured.value, 4),
                "dice": round(measured.dice, 4),
                "points": points,
            }
        )
    scores.sort(key=lambda s: (-s["points"], -s["quality"], s["pseudonym"]))
    qualities = [s["quality"] for s in scores]
    histogram = np.histogram(qualities, bins=[0.0, *SPREAD_BINS, 1.0 + 1e-9])[0]
    # How much the class agreed, pixel by pixel, where anyone marked anything.
    marked = np.sum([a.mask for a in answers], axis=0)
    union = marked > 0
    share = marked[union] / len(answers) if union.any() else np.zeros(0)
    return {
        "answers": len(answers),
        "fused": rle.encode(label),
        "confidence": round(fused.confidence, 4),
        "scores": scores,
        "spread": {
            "quality_bins": [0.0, *SPREAD_BINS, 1.0],
            "quality_counts": [int(n) for n in histogram],
            "quality_median": round(float(np.median(qualities)), 4),
            "agreement": round(float(share.mean()), 4) if share.size else None,
        },
        "expert": None if expert is None else _expert_comparison(label, expert),
    }


def _expert_mask(task: Task) -> np.ndarray | None:
    """The expert outline of a practice task; None for every other task (checks included)."""
    if not PracticeTask.objects.filter(task=task).exists():
        return None
    gold = getattr(task, "gold", None)
    return None if gold is None else rle.decode(gold.mask)


def _expert_comparison(label: np.ndarray, expert: np.ndarray) -> dict:
    measured = scoring.quality(label, expert)
    return {"dice": round(measured.dice, 4), "quality": round(measured.value, 4)}


def live_round_expert(*, live_round: LiveRound) -> np.ndarray | None:
    """The expert outline to draw for a closed round: practice tasks only."""
    return _expert_mask(live_round.task)


def practice_task_mark(*, task: Task, by: User | None) -> PracticeTask:
    """Make ``task``'s expert outline teaching material (shown after live rounds). The task must
    have a gold standard; from now on it is never handed out as a hidden check."""
    if getattr(task, "gold", None) is None:
        raise DomainError("only a task with an expert outline can be a practice task", code="no_gold")
    practice, _ = PracticeTask.objects.get_or_create(task=task, defaults={"created_by": by})
    return practice


# -- the report --------------------------------------------------------------------------------

MOST_CONFUSED = 3


def live_session_report(*, session: LiveSession) -> dict:
    """The teacher's report (real names included): per pupil, per image (the class's label against
    the expert's on practice images), the most-confused images (lowest median agreement with the
    class's label) and one row per pupil and round for the CSV."""
    rounds = list(session.rounds.order_by("number"))
    participants = list(session.participants.select_related("pupil").order_by("joined_at", "pk"))
    real_names = dict(
        ClassMember.objects.filter(classroom_id=session.classroom_id).values_list("pupil_id", "real_name")
    )
    answered = set(
        LiveAnswer.objects.filter(
            live_round__session=session, round__round_tasks__submission__isnull=False
        ).values_list("live_round__number", "participant_id")
    )
    practice = set(PracticeTask.objects.filter(task__in=[r.task_id for r in rounds]).values_list("task_id", flat=True))
    scores = {(r.number, s["participant"]): s for r in rounds for s in r.result.get("scores", [])}
    rows, pupils = [], []
    for p in participants:
        mine = [scores[(r.number, p.pk)] for r in rounds if (r.number, p.pk) in scores]
        pupils.append(
            {
                "participant": p.pk,
                "pseudonym": p.pupil.pseudonym,
                "real_name": real_names.get(p.pupil_id, ""),
                "kicked": p.kicked_at is not None,
                "answered": sum((r.number, p.pk) in answered for r in rounds),
                "mean_quality": round(float(np.mean([s["quality"] for s in mine])), 4) if mine else None,
                "points": sum(s["points"] for s in mine),
            }
        )
        for r in rounds:
            score = scores.get((r.number, p.pk))
            rows.append(
                {
                    "round": r.number,
                    "task": str(r.task_id),
                    "practice": r.task_id in practice,
                    "class_vs_expert_dice": (r.result.get("expert") or {}).get("dice"),
                    "pseudonym": p.pupil.pseudonym,
                    "real_name": real_names.get(p.pupil_id, ""),
                    "answered": (r.number, p.pk) in answered,
                    "quality": None if score is None else score["quality"],
                    "points": None if score is None else score["points"],
                }
            )
    images = [
        {
            "round": r.number,
            "task": str(r.task_id),
            "practice": r.task_id in practice,
            "skipped": r.skipped,
            "answers": r.result.get("answers", 0),
            "class_confidence": r.result.get("confidence"),
            "median_quality": (r.result.get("spread") or {}).get("quality_median"),
            "agreement": (r.result.get("spread") or {}).get("agreement"),
            "class_vs_expert_dice": (r.result.get("expert") or {}).get("dice"),
        }
        for r in rounds
    ]
    scored = [i for i in images if i["median_quality"] is not None]
    versus_expert = [i["class_vs_expert_dice"] for i in images if i["class_vs_expert_dice"] is not None]
    return {
        "session": str(session.pk),
        "classroom": session.classroom.name,
        "campaign": session.campaign.name,
        "state": session.state,
        "pupils": sorted(pupils, key=lambda p: (-p["points"], p["pseudonym"])),
        "images": images,
        "most_confused": [i["round"] for i in sorted(scored, key=lambda i: i["median_quality"])[:MOST_CONFUSED]],
        "class_vs_expert_mean_dice": round(float(np.mean(versus_expert)), 4) if versus_expert else None,
        "answers": rows,
    }
