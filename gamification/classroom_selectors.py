"""Classroom reads: a teacher's classes (their own only), a class's progress on an assignment, a
pupil's view of their classes and everything stored about them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Avg, Count, Max, QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from accounts.services import rater_id
from crowdseg.errors import NotFound

from .models import Assignment, CheckReport, ClassMember, Classroom, EarnedBadge, PlayerStats, Submission


def classrooms_for_teacher(*, teacher: User) -> QuerySet[Classroom]:
    return Classroom.objects.filter(teacher=teacher).annotate(pupil_count=Count("members")).order_by("-created_at")


def classroom_get_for_teacher(*, teacher: User, classroom_id: int) -> Classroom:
    """The teacher's own class, or NotFound (another teacher's class is not found either)."""
    classroom = classrooms_for_teacher(teacher=teacher).filter(pk=classroom_id).first()
    if classroom is None:
        raise NotFound(f"class {classroom_id} not found")
    return classroom


def member_get_for_teacher(*, teacher: User, classroom_id: int, pupil_id: int) -> ClassMember:
    member = (
        ClassMember.objects.filter(classroom_id=classroom_id, classroom__teacher=teacher, pupil_id=pupil_id)
        .select_related("pupil", "classroom")
        .first()
    )
    if member is None:
        raise NotFound(f"pupil {pupil_id} not found in class {classroom_id}")
    return member


def roster(*, classroom: Classroom) -> QuerySet[ClassMember]:
    return classroom.members.select_related("pupil").order_by("real_name", "pupil__pseudonym")


def assignment_get_for_teacher(*, teacher: User, classroom_id: int, assignment_id: int) -> Assignment:
    assignment = (
        Assignment.objects.filter(pk=assignment_id, classroom_id=classroom_id, classroom__teacher=teacher)
        .select_related("campaign", "classroom")
        .first()
    )
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} not found")
    return assignment


@dataclass(frozen=True)
class PupilProgress:
    """One pupil's work on an assignment. ``check_accuracy`` is the mean of their check reports'
    accuracy in the campaign (the coarsened figure the pupil sees, never per task: it must not tell
    which tasks were checks); None before any report."""

    pupil_id: int
    real_name: str
    pseudonym: str
    tasks_submitted: int
    target_tasks: int
    check_accuracy: float | None
    time_spent_s: float
    last_submitted_at: datetime | None
    status: str  # "done", "in progress", "not started", "overdue"

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.tasks_submitted / self.target_tasks))


def assignment_progress(*, assignment: Assignment, now: datetime | None = None) -> list[PupilProgress]:
    """Each pupil of the assignment's class, by name: tasks submitted in the campaign, check accuracy
    and time spent drawing (three grouped queries, whatever the class size)."""
    now = now or timezone.now()
    members = list(roster(classroom=assignment.classroom))
    pupil_ids = [m.pupil_id for m in members]
    work = {
        row["player_id"]: row
        for row in Submission.objects.filter(round_task__round__campaign=assignment.campaign, player_id__in=pupil_ids)
        .values("player_id")
        .annotate(n=Count("id"), ms=Sum("annotation__time_spent_ms"), last=Max("submitted_at"))
    }
    accuracy = dict(
        CheckReport.objects.filter(campaign=assignment.campaign, player_id__in=pupil_ids, accuracy__isnull=False)
        .values("player_id")
        .annotate(mean=Avg("accuracy"))
        .values_list("player_id", "mean")
    )
    rows = []
    for member in members:
        done = work.get(member.pupil_id, {})
        submitted = done.get("n", 0)
        if submitted >= assignment.target_tasks:
            status = "done"
        elif now >= assignment.due_at:
            status = "overdue"
        else:
            status = "in progress" if submitted else "not started"
        rows.append(
            PupilProgress(
                pupil_id=member.pupil_id,
                real_name=member.real_name,
                pseudonym=member.pupil.pseudonym,
                tasks_submitted=submitted,
                target_tasks=assignment.target_tasks,
                check_accuracy=accuracy.get(member.pupil_id),
                time_spent_s=(done.get("ms") or 0) / 1000,
                last_submitted_at=done.get("last"),
                status=status,
            )
        )
    return rows


def classes_of_pupil(*, pupil: User) -> QuerySet[Classroom]:
    """The classes a pupil is in, with their assignments (what a pupil sees of a class: its name,
    its assignments and their due dates; never their classmates)."""
    return Classroom.objects.filter(members__pupil=pupil).prefetch_related("assignments__campaign").order_by("name")


def pupil_tasks_submitted(*, pupil: User, campaign_ids: list[int]) -> dict[int, int]:
    """Tasks the pupil submitted per campaign."""
    return dict(
        Submission.objects.filter(player=pupil, round_task__round__campaign_id__in=campaign_ids)
        .values("round_task__round__campaign_id")
        .annotate(n=Count("id"))
        .values_list("round_task__round__campaign_id", "n")
    )


def personal_data(*, user: User) -> dict:
    """Everything stored about ``user`` that is about them, for "download my data" (ICO AADC:
    a child can see what is held about them). Gold checks stay hidden: a submission's agreement
    with a check is not included, only the check reports the player already sees."""
    stats = PlayerStats.objects.filter(player=user).first()
    submissions = (
        Submission.objects.filter(player=user)
        .select_related("round_task__round__campaign", "annotation")
        .order_by("submitted_at")
    )
    return {
        "account": {
            "username": user.username,
            "pseudonym": user.pseudonym,
            "role": user.role,
            "email": user.email or None,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
            "time_zone": user.time_zone,
            "research_id": rater_id(user.pk),
        },
        "classes": [
            {"class": m.classroom.name, "name_your_teacher_uses": m.real_name, "joined_at": m.joined_at}
            for m in ClassMember.objects.filter(pupil=user).select_related("classroom")
        ],
        "game": None
        if stats is None
        else {
            "xp": stats.xp,
            "level": stats.level,
            "rounds_completed": stats.rounds_completed,
            "tasks_submitted": stats.tasks_submitted,
            "best_streak": stats.best_streak,
        },
        "badges": [{"badge": b.code, "earned_at": b.earned_at} for b in EarnedBadge.objects.filter(player=user)],
        "check_reports": [
            {"campaign": r.campaign.name, "block": r.block, "accuracy": r.accuracy, "created_at": r.created_at}
            for r in CheckReport.objects.filter(player=user).select_related("campaign").order_by("created_at")
        ],
        "submissions": [
            {
                "campaign": s.round_task.round.campaign.name,
                "task": str(s.round_task.task_id),
                "submitted_at": s.submitted_at,
                "time_spent_ms": s.annotation.time_spent_ms,
                "points": s.points if s.points is not None else s.provisional_points,
                "status": s.status,
            }
            for s in submissions
        ],
    }
