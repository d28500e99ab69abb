"""Classroom endpoints: thin adapters over ``gamification.classroom_services`` and
``classroom_selectors``. Teachers act on their own classes only (another's class: 404); pupils
see their classes' names and assignments, never their classmates."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth import login
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from accounts.api.serializers import UserSerializer
from accounts.models import Role
from accounts.services import pupil_password_reset
from crowdseg.api import MAX_ID, StrictJSON
from crowdseg.errors import DomainError, Forbidden, NotFound
from gamification import classroom_selectors as selectors
from gamification import classroom_services as services
from gamification.classroom_files import LoginCard, login_cards_pdf, progress_csv, progress_xlsx
from gamification.models import Classroom
from gamification.selectors import campaign_get_for_player

# -- shapes ------------------------------------------------------------------------------------


class ClassroomSerializer(serializers.ModelSerializer):
    """What the class's teacher sees."""

    pupil_count = serializers.IntegerField(read_only=True, default=0)
    join_url = serializers.SerializerMethodField()

    class Meta:
        model = Classroom
        fields = ["id", "name", "join_code", "join_code_expires_at", "join_url", "retention_days", "pupil_count"]
        read_only_fields = fields

    def get_join_url(self, classroom) -> str:
        return _join_url(self.context["request"], classroom)


class ClassroomWriteSerializer(StrictJSON, serializers.Serializer):
    name = serializers.CharField(max_length=120)
    retention_days = serializers.IntegerField(min_value=1, max_value=3 * 365, default=365)


class ClassroomUpdateSerializer(StrictJSON, serializers.Serializer):
    name = serializers.CharField(max_length=120, required=False)
    retention_days = serializers.IntegerField(min_value=1, max_value=3 * 365, required=False)


class ClassJoinSerializer(StrictJSON, serializers.Serializer):
    code = serializers.CharField(max_length=32)
    client = serializers.ChoiceField(choices=["app", "browser"], default="browser")


class RosterAddSerializer(StrictJSON, serializers.Serializer):
    names = serializers.ListField(
        child=serializers.CharField(max_length=120), min_length=1, max_length=services.MAX_ROSTER_BATCH
    )


class MemberUpdateSerializer(StrictJSON, serializers.Serializer):
    real_name = serializers.CharField(max_length=120)


class MoveSerializer(StrictJSON, serializers.Serializer):
    to = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    keep = serializers.BooleanField(default=False, help_text="Also stay in this class")


class LoginCardsSerializer(StrictJSON, serializers.Serializer):
    pupils = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        max_length=services.MAX_PUPILS_PER_CLASS,
        help_text="Pupil ids; all the class's pupils when absent",
    )


class AssignmentCreateSerializer(StrictJSON, serializers.Serializer):
    campaign = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    target_tasks = serializers.IntegerField(min_value=1, max_value=10_000)
    due_at = serializers.DateTimeField()


def _join_url(request, classroom, username: str = "") -> str:
    """The class's join page; with ``username``, the page fills it in (a login card's QR code)."""
    url = request.build_absolute_uri(reverse("class-join-page", args=[classroom.join_code]))
    return f"{url}?{urlencode({'u': username})}" if username else url


def _member_data(member) -> dict:
    return {
        "id": member.pupil_id,
        "real_name": member.real_name,
        "pseudonym": member.pupil.pseudonym,
        "username": member.pupil.username,
        "has_password": member.pupil.has_usable_password(),
        "joined_at": member.joined_at,
    }


def _assignment_data(assignment) -> dict:
    return {
        "id": assignment.pk,
        "campaign": {"id": assignment.campaign_id, "name": assignment.campaign.name},
        "target_tasks": assignment.target_tasks,
        "due_at": assignment.due_at,
    }


def _progress_data(row) -> dict:
    return {
        "pupil": row.pupil_id,
        "real_name": row.real_name,
        "pseudonym": row.pseudonym,
        "tasks_submitted": row.tasks_submitted,
        "target_tasks": row.target_tasks,
        "percent": row.percent,
        "check_accuracy": row.check_accuracy,
        "time_spent_s": row.time_spent_s,
        "last_submitted_at": row.last_submitted_at,
        "status": row.status,
    }


def _teacher(request):
    if request.user.role != Role.TEACHER:
        raise Forbidden("only teachers run classes", code="not_a_teacher")
    return request.user


def _classroom(request, classroom_id: int):
    return selectors.classroom_get_for_teacher(teacher=_teacher(request), classroom_id=classroom_id)


def _member(request, classroom_id: int, pupil_id: int):
    return selectors.member_get_for_teacher(teacher=_teacher(request), classroom_id=classroom_id, pupil_id=pupil_id)


def _attachment(content: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"  # pupils' names and passwords
    return response


# -- teachers: classes -------------------------------------------------------------------------


class ClassroomListView(APIView):
    """Your classes (teachers), or create one."""

    @extend_schema(responses={200: ClassroomSerializer(many=True)})
    def get(self, request):
        classes = selectors.classrooms_for_teacher(teacher=_teacher(request))
        return Response(ClassroomSerializer(classes, many=True, context={"request": request}).data)

    @extend_schema(request=ClassroomWriteSerializer, responses={201: ClassroomSerializer})
    def post(self, request):
        teacher = _teacher(request)
        params = ClassroomWriteSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        classroom = services.classroom_create(teacher=teacher, **params.validated_data)
        return Response(ClassroomSerializer(classroom, context={"request": request}).data, status=201)


class ClassroomDetailView(APIView):
    @extend_schema(responses={200: ClassroomSerializer})
    def get(self, request, classroom_id: int):
        classroom = _classroom(request, classroom_id)
        return Response(ClassroomSerializer(classroom, context={"request": request}).data)

    @extend_schema(request=ClassroomUpdateSerializer, responses={200: ClassroomSerializer})
    def patch(self, request, classroom_id: int):
        classroom = _classroom(request, classroom_id)
        params = ClassroomUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        classroom = services.classroom_update(classroom=classroom, **params.validated_data)
        return Response(ClassroomSerializer(classroom, context={"request": request}).data)

    @extend_schema(request=None, responses={200: dict})
    def delete(self, request, classroom_id: int):
        """Delete the class; pupils in no other class are erased (their labels stay, anonymous)."""
        classroom = _classroom(request, classroom_id)
        return Response({"pupils_erased": services.classroom_delete(classroom=classroom)})


class JoinCodeRotateView(APIView):
    """A new join code (the old one stops working at once)."""

    @extend_schema(request=None, responses={200: ClassroomSerializer})
    def post(self, request, classroom_id: int):
        classroom = services.classroom_rotate_code(classroom=_classroom(request, classroom_id))
        return Response(ClassroomSerializer(classroom, context={"request": request}).data)


# -- teachers: rosters -------------------------------------------------------------------------


class RosterView(APIView):
    """The class's pupils with your names for them, or add pupils by name: each gets an account
    with a generated username, pseudonym and password (answered once: print the login cards)."""

    @extend_schema(responses={200: dict})
    def get(self, request, classroom_id: int):
        classroom = _classroom(request, classroom_id)
        return Response({"pupils": [_member_data(m) for m in selectors.roster(classroom=classroom)]})

    @extend_schema(request=RosterAddSerializer, responses={201: dict})
    def post(self, request, classroom_id: int):
        classroom = _classroom(request, classroom_id)
        params = RosterAddSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        created = services.roster_add(classroom=classroom, **params.validated_data)
        return Response(
            {"pupils": [{**_member_data(member), "password": password} for member, password in created]}, status=201
        )


class MemberView(APIView):
    @extend_schema(request=MemberUpdateSerializer, responses={200: dict})
    def patch(self, request, classroom_id: int, pupil_id: int):
        """Your name for the pupil (shown to you only)."""
        member = _member(request, classroom_id, pupil_id)
        params = MemberUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        return Response(_member_data(services.member_rename(member=member, **params.validated_data)))

    @extend_schema(request=None, responses={200: dict})
    def delete(self, request, classroom_id: int, pupil_id: int):
        """Take the pupil out of the class; a pupil in no other class is erased."""
        member = _member(request, classroom_id, pupil_id)
        return Response({"erased": services.member_delete(member=member)})


class PasswordResetView(APIView):
    """A new picture-word password for the pupil (answered once; the old one stops working)."""

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, classroom_id: int, pupil_id: int):
        member = _member(request, classroom_id, pupil_id)
        password = pupil_password_reset(pupil=member.pupil)
        return Response({**_member_data(member), "password": password})


class MoveView(APIView):
    """Move the pupil to another of your classes (``keep``: stay in this one too)."""

    @extend_schema(request=MoveSerializer, responses={200: dict})
    def post(self, request, classroom_id: int, pupil_id: int):
        teacher = _teacher(request)
        member = selectors.member_get_for_teacher(teacher=teacher, classroom_id=classroom_id, pupil_id=pupil_id)
        params = MoveSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        to = selectors.classroom_get_for_teacher(teacher=teacher, classroom_id=params.validated_data["to"])
        moved = services.member_move(member=member, to=to, keep=params.validated_data["keep"])
        return Response({**_member_data(moved), "classroom": to.pk})


class LoginCardsView(APIView):
    """Login cards (PDF) for the class's pupils, or those listed: printing gives each of them a
    new password (passwords are stored hashed only), and the card's QR code joins the class."""

    @extend_schema(request=LoginCardsSerializer, responses={(200, "application/pdf"): bytes})
    def post(self, request, classroom_id: int):
        classroom = _classroom(request, classroom_id)
        params = LoginCardsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        members = list(selectors.roster(classroom=classroom))
        wanted = params.validated_data.get("pupils")
        if wanted is not None:
            unknown = set(wanted) - {m.pupil_id for m in members}
            if unknown:
                raise DomainError("pupils not in this class", fields={"pupils": sorted(unknown)})
            members = [m for m in members if m.pupil_id in set(wanted)]
        cards = [
            LoginCard(
                real_name=m.real_name or m.pupil.pseudonym,
                username=m.pupil.username,
                password=pupil_password_reset(pupil=m.pupil),
                class_name=classroom.name,
                join_url=_join_url(request, classroom, m.pupil.username),
            )
            for m in members
        ]
        return _attachment(login_cards_pdf(cards), "application/pdf", f"login-cards-{classroom.pk}.pdf")


# -- teachers: assignments ---------------------------------------------------------------------


class AssignmentListView(APIView):
    """The class's assignments, or set a campaign for it (one you can see) with a target number
    of tasks per pupil and a due date."""

    @extend_schema(operation_id="classes_assignments_list", responses={200: dict})
    def get(self, request, classroom_id: int):
        classroom = _classroom(request, classroom_id)
        assignments = classroom.assignments.select_related("campaign").order_by("due_at")
        return Response({"assignments": [_assignment_data(a) for a in assignments]})

    @extend_schema(request=AssignmentCreateSerializer, responses={201: dict})
    def post(self, request, classroom_id: int):
        classroom = _classroom(request, classroom_id)
        params = AssignmentCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        campaign = campaign_get_for_player(user=request.user, campaign_id=data.pop("campaign"))
        assignment = services.assignment_create(classroom=classroom, campaign=campaign, **data)
        return Response(_assignment_data(assignment), status=201)


class AssignmentDetailView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, classroom_id: int, assignment_id: int):
        """The class dashboard: each pupil's progress, accuracy on checks and time spent."""
        assignment = selectors.assignment_get_for_teacher(
            teacher=_teacher(request), classroom_id=classroom_id, assignment_id=assignment_id
        )
        rows = selectors.assignment_progress(assignment=assignment)
        return Response({**_assignment_data(assignment), "pupils": [_progress_data(r) for r in rows]})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, classroom_id: int, assignment_id: int):
        assignment = selectors.assignment_get_for_teacher(
            teacher=_teacher(request), classroom_id=classroom_id, assignment_id=assignment_id
        )
        assignment.delete()
        return Response(status=204)


class AssignmentExportView(APIView):
    """The dashboard as a file: ``csv`` or ``xlsx``."""

    @extend_schema(responses={(200, "text/csv"): bytes})
    def get(self, request, classroom_id: int, assignment_id: int, file_format: str):
        assignment = selectors.assignment_get_for_teacher(
            teacher=_teacher(request), classroom_id=classroom_id, assignment_id=assignment_id
        )
        if file_format not in ("csv", "xlsx"):
            raise NotFound(f"no export as {file_format[:10]!r}: csv or xlsx")
        rows = selectors.assignment_progress(assignment=assignment)
        name = f"class-{classroom_id}-assignment-{assignment_id}-{timezone.now():%Y%m%d}"
        if file_format == "csv":
            return _attachment(progress_csv(rows), "text/csv; charset=utf-8", f"{name}.csv")
        title = f"{assignment.classroom.name}: {assignment.campaign.name}, due {assignment.due_at:%Y-%m-%d}"
        xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return _attachment(progress_xlsx(rows, title=title), xlsx, f"{name}.xlsx")


# -- pupils ------------------------------------------------------------------------------------


class JoinThrottle(AnonRateThrottle):
    """Accounts made by joining, per address: a whole class joins from one school address."""

    scope = "class_join"


class ClassJoinView(APIView):
    """Join a class with its code. Without an account you get a pupil account (no e-mail, no
    password: browsers keep a session cookie, apps a session token); a signed-in pupil joins as
    themselves. A wrong or expired code gets one answer, whether or not a class exists."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = [JoinThrottle]

    @extend_schema(request=ClassJoinSerializer, responses={200: dict, 201: dict})
    def post(self, request):
        params = ClassJoinSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        user = request.user if request.user.is_authenticated else None
        client = f"user:{user.pk}" if user else f"ip:{JoinThrottle().get_ident(request)}"
        classroom = services.classroom_for_code(code=params.validated_data["code"], client=client)
        member, created = services.classroom_join(classroom=classroom, pupil=user)
        body = {"classroom": {"id": classroom.pk, "name": classroom.name}, "user": UserSerializer(member.pupil).data}
        if created:
            login(request._request, member.pupil, backend="django.contrib.auth.backends.ModelBackend")
            if params.validated_data["client"] == "app":
                request._request.session.save()
                body["session_token"] = request._request.session.session_key
        return Response(body, status=201 if created else 200)


class MyClassesView(APIView):
    """Your classes (pupils): their names and assignments with your own progress."""

    @extend_schema(responses={200: dict})
    def get(self, request):
        classes = list(selectors.classes_of_pupil(pupil=request.user))
        campaign_ids = [a.campaign_id for c in classes for a in c.assignments.all()]
        done = selectors.pupil_tasks_submitted(pupil=request.user, campaign_ids=campaign_ids)
        return Response(
            {
                "classes": [
                    {
                        "id": c.pk,
                        "name": c.name,
                        "assignments": [
                            {**_assignment_data(a), "tasks_submitted": done.get(a.campaign_id, 0)}
                            for a in c.assignments.all()
                        ],
                    }
                    for c in classes
                ]
            }
        )


class MyDataView(APIView):
    """Download everything stored about you (JSON)."""

    @extend_schema(responses={200: dict})
    def get(self, request):
        response = Response(selectors.personal_data(user=request.user))
        response["Content-Disposition"] = 'attachment; filename="my-data.json"'
        response["Cache-Control"] = "no-store"
        return response
