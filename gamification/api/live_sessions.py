"""Live-session endpoints: the REST side of what also travels over ``ws/v1/play``. Thin adapters over
``gamification.live_sessions``. The teacher of the session's class sees the session (with pupils'
pseudonyms; real names only in the report); a pupil sees the session they joined, their own
answers and the class's leaderboard by pseudonym; everyone else gets 404."""

from __future__ import annotations

import csv
import io

import numpy as np
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from PIL import Image as PILImage
from PIL import ImageFilter
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from crowdseg.api import MAX_ID, StrictJSON
from crowdseg.errors import NotFound
from gamification import live_sessions
from gamification.classroom_selectors import classroom_get_for_teacher
from gamification.models import Campaign, LiveParticipant, LiveRound, LiveSession, Submission
from inference.engine import rle

from .serializers import SubmissionSerializer
from .views import IDEMPOTENCY_HEADER, SubmitThrottle, _outcome_response

# -- shapes ------------------------------------------------------------------------------------


class LiveOpenSerializer(StrictJSON, serializers.Serializer):
    classroom = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    campaign = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    round_seconds = serializers.IntegerField(
        min_value=live_sessions.ROUND_SECONDS_RANGE[0], max_value=live_sessions.ROUND_SECONDS_RANGE[1], default=60
    )
    capacity = serializers.IntegerField(
        min_value=live_sessions.CAPACITY_RANGE[0], max_value=live_sessions.CAPACITY_RANGE[1], default=40
    )


class LiveJoinSerializer(StrictJSON, serializers.Serializer):
    code = serializers.CharField(max_length=20)


class LiveControlSerializer(StrictJSON, serializers.Serializer):
    action = serializers.ChoiceField(choices=live_sessions.Action)
    participant = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)


def _round_summary(live_round: LiveRound) -> dict:
    return {
        **live_sessions.closed_event(live_round),
        "task": str(live_round.task_id),
        "closed": live_round.closed_at is not None,
    }


def _running(session: LiveSession) -> dict | None:
    current = live_sessions.live_round_running(session=session)
    if current is None:
        return None
    seconds_left = (
        (session.paused_remaining_ms or 0) / 1000
        if session.state == LiveSession.State.PAUSED
        else max(0.0, (current.ends_at - timezone.now()).total_seconds())
    )
    return {**live_sessions.round_event(current), "seconds_left": round(seconds_left, 1)}


def _totals(rounds: list[LiveRound]) -> list[dict]:
    """The session's leaderboard so far, by pseudonym."""
    points: dict[str, int] = {}
    for live_round in rounds:
        for score in live_round.result.get("scores", []):
            points[score["pseudonym"]] = points.get(score["pseudonym"], 0) + score["points"]
    ranked = sorted(points.items(), key=lambda item: (-item[1], item[0]))
    return [{"pseudonym": name, "points": total} for name, total in ranked[: live_sessions.LEADERBOARD_SIZE]]


def teacher_state(session: LiveSession) -> dict:
    """What the teacher's screen and the projector show: pseudonyms only."""
    participants = list(session.participants.select_related("pupil").order_by("joined_at", "pk"))
    rounds = list(session.rounds.all())
    running = _running(session)
    answered = set()
    if running is not None:
        answered = set(
            Submission.objects.filter(
                round_task__round__live_answer__live_round__session=session,
                round_task__round__live_answer__live_round__number=running["round"],
            ).values_list("round_task__round__live_answer__participant_id", flat=True)
        )
    return {
        "id": str(session.pk),
        "code": session.code,
        "state": session.state,
        "classroom": {"id": session.classroom_id, "name": session.classroom.name},
        "campaign": {"id": session.campaign_id, "name": session.campaign.name},
        "round_seconds": session.round_seconds,
        "capacity": session.capacity,
        "participants": [
            {
                "id": p.pk,
                "pseudonym": p.pupil.pseudonym,
                "kicked": p.kicked_at is not None,
                "answered": p.pk in answered,
            }
            for p in participants
        ],
        "current_round": running,
        "answers": len(answered),
        "rounds": [
            {
                **_round_summary(r),
                "confidence": r.result.get("confidence"),
                "expert": r.result.get("expert"),
                "overlay_url": reverse("live-session-overlay", args=[session.pk, r.number]),
            }
            for r in rounds
        ],
        "leaderboard": _totals(rounds),
    }


def pupil_state(session: LiveSession, participant: LiveParticipant, request=None) -> dict:
    """What a pupil's phone shows: the running round (with where to send their answer), their own
    answers and the class's leaderboard by pseudonym. Never another pupil's mask or name."""
    rounds = list(session.rounds.all())
    mine = {
        number: (round_id, submitted)
        for number, round_id, submitted in participant.answers.values_list(
            "live_round__number", "round_id", "round__round_tasks__submission"
        )
    }
    own_scores = {
        r.number: next((s for s in r.result.get("scores", []) if s["participant"] == participant.pk), None)
        for r in rounds
    }
    running = _running(session)
    if running is not None:
        round_id, submitted = mine.get(running["round"], (None, None))
        running["my_round"] = str(round_id) if round_id else None
        running["submitted"] = submitted is not None
        running["submit_url"] = reverse("round-submit", args=[round_id, running["task"]]) if round_id else None
    return {
        "id": str(session.pk),
        "state": session.state,
        "campaign": {"id": session.campaign_id, "name": session.campaign.name},
        "me": {"participant": participant.pk, "pseudonym": participant.pupil.pseudonym},
        "current_round": running,
        "rounds": [
            {
                **_round_summary(r),
                "submitted": r.number in mine and mine[r.number][1] is not None,
                "my_points": (own_scores[r.number] or {}).get("points"),
                "my_quality": (own_scores[r.number] or {}).get("quality"),
            }
            for r in rounds
        ],
        "leaderboard": _totals(rounds),
    }


def session_state_for(user, session_id) -> dict:
    """The teacher's view for the class's teacher, the pupil's for a participant, else NotFound."""
    session = LiveSession.objects.select_related("classroom", "campaign").filter(pk=session_id).first()
    if session is not None and session.classroom.teacher_id == user.pk:
        live_sessions.live_session_tick(session=session)
        session.refresh_from_db()
        return teacher_state(session)
    session, participant = live_sessions.live_session_get_for_pupil(user=user, session_id=session_id)
    if live_sessions.live_session_tick(session=session):
        session.refresh_from_db()
    return pupil_state(session, participant)


# -- views -------------------------------------------------------------------------------------


class LiveSessionListView(APIView):
    """Open a live session (teachers, on one of their classes): it starts in its lobby."""

    @extend_schema(request=LiveOpenSerializer, responses={201: dict})
    def post(self, request):
        params = LiveOpenSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        classroom = classroom_get_for_teacher(teacher=request.user, classroom_id=data["classroom"])
        campaign = Campaign.objects.filter(pk=data["campaign"]).first()
        if campaign is None:
            raise NotFound("no such campaign for this class")
        session = live_sessions.live_session_open(
            teacher=request.user,
            classroom=classroom,
            campaign=campaign,
            round_seconds=data["round_seconds"],
            capacity=data["capacity"],
        )
        session = live_sessions.live_session_get_for_teacher(user=request.user, session_id=session.pk)
        return Response(teacher_state(session), status=201)


class LiveSessionJoinView(APIView):
    """A pupil joins (or rejoins, keeping their answers) the open session with this code."""

    @extend_schema(request=LiveJoinSerializer, responses={200: dict})
    def post(self, request):
        params = LiveJoinSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        session, participant = live_sessions.live_session_join(pupil=request.user, code=params.validated_data["code"])
        return Response(pupil_state(session, participant))


class LiveSessionDetailView(APIView):
    """The session as you may see it: the teacher's view or your own as a pupil."""

    @extend_schema(responses={200: dict})
    def get(self, request, session_id):
        return Response(session_state_for(request.user, session_id))


class LiveSessionControlView(APIView):
    """The teacher's buttons: ``start`` (the next round), ``pause``, ``resume``, ``skip``, ``end``,
    ``kick`` (with ``participant``)."""

    @extend_schema(request=LiveControlSerializer, responses={200: dict})
    def post(self, request, session_id):
        session = live_sessions.live_session_get_for_teacher(user=request.user, session_id=session_id)
        params = LiveControlSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        session = live_sessions.live_session_control(
            session=session,
            action=params.validated_data["action"],
            participant_id=params.validated_data.get("participant"),
        )
        return Response(teacher_state(session))


class LiveSessionSubmitView(APIView):
    """A pupil's answer for round ``number``: the same body, ``Idempotency-Key`` and answers as
    ``round-submit`` (the pupil's one-task round of the live round)."""

    throttle_classes = [SubmitThrottle]

    @extend_schema(
        request=SubmissionSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: dict},
    )
    def post(self, request, session_id, number: int):
        live_sessions.live_session_get_for_pupil(user=request.user, session_id=session_id)
        params = SubmissionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        outcome = live_sessions.live_answer_submit(
            pupil=request.user,
            session_id=session_id,
            number=number,
            data=dict(params.validated_data),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        return _outcome_response(outcome)


class LiveRoundOverlayView(APIView):
    """PNG for the projector (the class's teacher only): the round's image; once the round is
    closed, the class's fused mask over it, and on practice images the expert outline in white."""

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, session_id, number: int):
        session = live_sessions.live_session_get_for_teacher(user=request.user, session_id=session_id)
        live_round = session.rounds.select_related("task__image", "task__label_class").filter(number=number).first()
        if live_round is None:
            raise NotFound("no such round in this session")
        png = overlay_png(live_round)
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = "private, no-store"
        return response


def overlay_png(live_round: LiveRound) -> bytes:
    image = live_round.task.image
    with image.display.open("rb") as handle:
        picture = PILImage.open(handle).convert("RGB")
    picture = picture.resize((image.width, image.height)) if picture.size != (image.width, image.height) else picture
    pixels = np.asarray(picture, dtype=np.float32)
    fused = live_round.result.get("fused") if live_round.closed_at else None
    if fused:
        mask = rle.decode(fused)
        color = np.array([int(live_round.task.label_class.color[i : i + 2], 16) for i in (1, 3, 5)], np.float32)
        pixels[mask] = 0.45 * color + 0.55 * pixels[mask]
    expert = live_sessions.live_round_expert(live_round=live_round) if live_round.closed_at else None
    if expert is not None:
        outline = PILImage.fromarray(expert.astype(np.uint8) * 255)
        edge = np.asarray(outline.filter(ImageFilter.FIND_EDGES)) > 0
        pixels[edge] = 255.0
    out = io.BytesIO()
    PILImage.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


class LiveSessionReportView(APIView):
    """After (or during) the session, for the class's teacher: per-pupil and per-image results,
    the most-confused images, the class's label against the expert's. ``?download=csv`` for a
    CSV with one row per pupil and round (real names included: it is the teacher's)."""

    @extend_schema(parameters=[OpenApiParameter("download", str, enum=["csv"])], responses={200: dict})
    def get(self, request, session_id):
        session = live_sessions.live_session_get_for_teacher(user=request.user, session_id=session_id)
        report = live_sessions.live_session_report(session=session)
        if request.query_params.get("download") == "csv":
            return _report_csv(session, report)
        return Response(report)


def _report_csv(session: LiveSession, report: dict) -> HttpResponse:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["round", "task", "practice", "class_vs_expert_dice", "pseudonym", "real_name", "answered", "quality", "points"]
    )
    for row in report["answers"]:
        writer.writerow(
            [
                row["round"],
                row["task"],
                row["practice"],
                "" if row["class_vs_expert_dice"] is None else row["class_vs_expert_dice"],
                row["pseudonym"],
                row["real_name"],
                row["answered"],
                "" if row["quality"] is None else row["quality"],
                "" if row["points"] is None else row["points"],
            ]
        )
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="live-session-{session.code}.csv"'
    return response
