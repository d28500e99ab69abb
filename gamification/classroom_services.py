"""Classroom actions: classes, join codes, rosters of pupil accounts, assignments, erasure, retention.

Rules, documented in the README's "Classrooms" section:

- **Teachers own their classes.** Another teacher's class is not found (404), whatever the action.
- **Join codes** are 6 characters a child can type (``models.JOIN_CODE_ALPHABET``), compared
  case-insensitively, valid for ``models.JOIN_CODE_DAYS`` days and rotatable. A wrong, expired or
  rotated-away code gets one answer that does not say whether a class exists, and a client's failed
  tries are rate-limited (``JOIN_FAILURES`` per ``JOIN_FAILURE_WINDOW_S``; a whole class joins from
  one school address, so only failures count).
- **Pupils** have a generated username and pseudonym, no e-mail and no date of birth
  (``accounts.services.pupil_create``). The teacher's name for a pupil lives in the class
  (``ClassMember.real_name``) and is shown to that class's teacher only.
- **Erasure.** Deleting a pupil, a class, or a membership past its class's retention period erases
  the pupil's personal data once they are in no class any more: the account row is anonymised
  (``accounts.services.user_anonymise``), game data about the child (stats, badges, leaderboard
  entries, check reports) is deleted, and their research labels stay, attached to the opaque
  ``rater_id``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Role, User
from crowdseg.errors import Conflict, DomainError, Forbidden, NotFound

from .models import (
    JOIN_CODE_ALPHABET,
    JOIN_CODE_DAYS,
    JOIN_CODE_LENGTH,
    Assignment,
    Campaign,
    CheckReport,
    ClassMember,
    Classroom,
    EarnedBadge,
    LeaderboardEntry,
    PlayerStats,
    join_code_generate,
)

MAX_PUPILS_PER_CLASS = 60
MAX_ROSTER_BATCH = 60  # pupils created at once
JOIN_FAILURES = 20  # failed join codes a client may try ...
JOIN_FAILURE_WINDOW_S = 15 * 60  # ... in this many seconds


class JoinCodeInvalid(DomainError):
    """Not found: the same answer for a code that never existed, expired or was replaced."""

    status = 404
    code = "join_code_invalid"


class JoinRateLimited(DomainError):
    status = 429
    code = "throttled"


def _require_teacher(user: User) -> None:
    if user.role != Role.TEACHER:
        raise Forbidden("only teachers run classes", code="not_a_teacher")


# -- classes -----------------------------------------------------------------------------------


def classroom_create(*, teacher: User, name: str, retention_days: int = 365) -> Classroom:
    """A new class of ``teacher`` with a fresh join code."""
    _require_teacher(teacher)
    for _ in range(5):  # a code collision among ~3.9e8 codes is rare; retry it rather than fail
        try:
            with transaction.atomic():
                return Classroom.objects.create(
                    teacher=teacher, name=name, retention_days=retention_days, join_code=join_code_generate()
                )
        except IntegrityError:
            continue
    raise Conflict("could not find a free join code; try again", code="join_code_collision")


def classroom_update(*, classroom: Classroom, name: str | None = None, retention_days: int | None = None) -> Classroom:
    if name is not None:
        classroom.name = name
    if retention_days is not None:
        classroom.retention_days = retention_days
    classroom.save(update_fields=["name", "retention_days"])
    return classroom


def classroom_rotate_code(*, classroom: Classroom, now: datetime | None = None) -> Classroom:
    """A new join code, valid ``JOIN_CODE_DAYS`` days from now; the old one stops working at once."""
    now = now or timezone.now()
    for _ in range(5):
        try:
            with transaction.atomic():
                classroom.join_code = join_code_generate()
                classroom.join_code_expires_at = now + timedelta(days=JOIN_CODE_DAYS)
                classroom.save(update_fields=["join_code", "join_code_expires_at"])
                return classroom
        except IntegrityError:
            continue
    raise Conflict("could not find a free join code; try again", code="join_code_collision")


@transaction.atomic
def classroom_delete(*, classroom: Classroom) -> int:
    """Delete the class, its assignments and memberships; erase pupils left in no class.

    Returns the number of pupils erased."""
    pupil_ids = list(classroom.members.values_list("pupil_id", flat=True))
    classroom.delete()
    return _erase_classless(pupil_ids)


# -- joining -----------------------------------------------------------------------------------


def join_code_normalise(code: str) -> str:
    """What the pupil typed, as stored: upper case, without spaces or dashes."""
    return "".join(code.split()).replace("-", "").upper()


def join_failures_check(key: str) -> None:
    """``JoinRateLimited`` once ``key`` (a client's failed tries at one kind of code) has counted
    ``JOIN_FAILURES`` within ``JOIN_FAILURE_WINDOW_S``."""
    if cache.get(key, 0) >= JOIN_FAILURES:
        raise JoinRateLimited(
            "too many wrong codes; wait a few minutes and ask your teacher for the code",
            headers={"Retry-After": str(JOIN_FAILURE_WINDOW_S)},
        )


def join_failure_record(key: str) -> None:
    """Count one failed try against ``key`` (the window starts at the first)."""
    if not cache.add(key, 1, JOIN_FAILURE_WINDOW_S):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, JOIN_FAILURE_WINDOW_S)


def classroom_for_code(*, code: str, client: str, now: datetime | None = None) -> Classroom:
    """The class whose current join code ``code`` is, or ``JoinCodeInvalid`` (the same error for an
    unknown, expired or malformed code). ``client`` identifies the caller for the rate limit on
    failures (an IP address or a user id): past ``JOIN_FAILURES`` in the window, ``JoinRateLimited``."""
    now = now or timezone.now()
    key = f"classjoin:fail:{client}"
    join_failures_check(key)
    code = join_code_normalise(code)
    classroom = None
    if len(code) == JOIN_CODE_LENGTH and set(code) <= set(JOIN_CODE_ALPHABET):
        classroom = Classroom.objects.filter(join_code=code, join_code_expires_at__gt=now).first()
    if classroom is None:
        join_failure_record(key)
        raise JoinCodeInvalid("this code does not work: check it with your teacher (codes expire)")
    return classroom


def _member_add(*, classroom: Classroom, pupil: User, real_name: str = "") -> ClassMember:
    """Put ``pupil`` in ``classroom`` (idempotent); Conflict when the class is full."""
    member = ClassMember.objects.filter(classroom=classroom, pupil=pupil).first()
    if member is not None:
        return member
    locked = Classroom.objects.select_for_update().get(pk=classroom.pk)  # serialises the size check
    if locked.members.count() >= MAX_PUPILS_PER_CLASS:
        raise Conflict(f"this class is full ({MAX_PUPILS_PER_CLASS} pupils)", code="class_full")
    return ClassMember.objects.create(classroom=classroom, pupil=pupil, real_name=real_name)


@transaction.atomic
def classroom_join(*, classroom: Classroom, pupil: User | None) -> tuple[ClassMember, bool]:
    """A pupil joins ``classroom`` (found by its code). ``pupil=None`` is someone without an
    account: they get a new pupil account with no password. Returns (membership, account created).
    Other roles are refused: a class is for pupils."""
    created = pupil is None
    if pupil is None:
        pupil = account_services.pupil_create()
    elif pupil.role != Role.PUPIL:
        raise Forbidden("only pupil accounts join classes; sign out to join as a pupil", code="not_a_pupil")
    return _member_add(classroom=classroom, pupil=pupil), created


# -- rosters -----------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name or len(name) > 120:
        raise DomainError("a pupil's name is 1 to 120 characters", fields={"names": [name[:40]]})
    return name


@transaction.atomic
def roster_add(*, classroom: Classroom, names: list[str]) -> list[tuple[ClassMember, str]]:
    """New pupil accounts for ``names`` in ``classroom``; returns each membership with the pupil's
    password, which is stored hashed only: print the login cards now (or reset passwords later)."""
    if not names or len(names) > MAX_ROSTER_BATCH:
        raise DomainError(f"give 1 to {MAX_ROSTER_BATCH} names", fields={"names": ["1 to 60 names"]})
    cleaned = [_clean_name(name) for name in names]
    if classroom.members.count() + len(cleaned) > MAX_PUPILS_PER_CLASS:
        raise Conflict(f"a class holds at most {MAX_PUPILS_PER_CLASS} pupils", code="class_full")
    created = []
    for name in cleaned:
        password = account_services.pupil_password_generate()
        pupil = account_services.pupil_create(password=password)
        created.append((_member_add(classroom=classroom, pupil=pupil, real_name=name), password))
    return created


def member_rename(*, member: ClassMember, real_name: str) -> ClassMember:
    """The teacher's name for the pupil in this class (pupils cannot rename themselves)."""
    member.real_name = _clean_name(real_name)
    member.save(update_fields=["real_name"])
    return member


@transaction.atomic
def member_move(*, member: ClassMember, to: Classroom, keep: bool = False) -> ClassMember:
    """Move the pupil to another class of the same teacher (``keep=True``: add them there and keep
    them here too). Their name in the class goes with them."""
    if to.teacher_id != member.classroom.teacher_id:
        raise NotFound(f"class {to.pk} not found")
    if to.pk == member.classroom_id:
        raise DomainError("the pupil is already in this class", code="same_class", fields={"to": ["same class"]})
    moved = _member_add(classroom=to, pupil=member.pupil, real_name=member.real_name)
    if not keep:
        member.delete()
    return moved


@transaction.atomic
def member_delete(*, member: ClassMember) -> bool:
    """Take the pupil out of the class; erase them if they are in no class any more. Returns
    whether they were erased (a pupil in another teacher's class keeps their account there)."""
    pupil_id = member.pupil_id
    member.delete()
    return _erase_classless([pupil_id]) == 1


# -- erasure and retention ---------------------------------------------------------------------


def _erase_classless(pupil_ids: list[int]) -> int:
    """Erase the pupils among ``pupil_ids`` who are in no class. Returns how many."""
    in_a_class = ClassMember.objects.filter(pupil_id__in=pupil_ids).values("pupil_id")
    pupils = User.objects.filter(pk__in=pupil_ids, role=Role.PUPIL, is_active=True).exclude(pk__in=in_a_class)
    erased = 0
    for pupil in pupils:
        pupil_erase(pupil=pupil)
        erased += 1
    return erased


@transaction.atomic
def pupil_erase(*, pupil: User) -> User:
    """Delete a pupil's personal data: memberships, the game's record of them (stats, badges,
    leaderboard entries, check reports) and what identifies their account. Their annotations and
    submissions stay for research, under ``accounts.services.rater_id(pupil.pk)``."""
    if pupil.role != Role.PUPIL:
        raise Forbidden("only pupil accounts are erased this way", code="not_a_pupil")
    ClassMember.objects.filter(pupil=pupil).delete()
    for model in (PlayerStats, EarnedBadge, LeaderboardEntry, CheckReport):
        model.objects.filter(player=pupil).delete()
    return account_services.user_anonymise(user=pupil)


def memberships_expire(*, now: datetime | None = None) -> int:
    """Enforce every class's retention period: memberships older than their class's
    ``retention_days`` end, and pupils left in no class are erased. Returns pupils erased.
    Safe to run twice (the beat job runs it daily)."""
    now = now or timezone.now()
    erased = 0
    for days in Classroom.objects.values_list("retention_days", flat=True).distinct():
        expired = ClassMember.objects.filter(classroom__retention_days=days, joined_at__lt=now - timedelta(days=days))
        with transaction.atomic():
            pupil_ids = list(expired.values_list("pupil_id", flat=True))
            expired.delete()
            erased += _erase_classless(pupil_ids)
    return erased


# -- assignments -------------------------------------------------------------------------------


def assignment_create(
    *, classroom: Classroom, campaign: Campaign, target_tasks: int, due_at: datetime, now: datetime | None = None
) -> Assignment:
    """Set ``campaign`` for the class: each pupil should submit ``target_tasks`` tasks by ``due_at``.
    The campaign must be one the teacher can see (``selectors.campaigns_for_player``)."""
    now = now or timezone.now()
    if due_at <= now:
        raise DomainError("the due date must be in the future", fields={"due_at": ["in the past"]})
    if Assignment.objects.filter(classroom=classroom, campaign=campaign).exists():
        raise Conflict("this campaign is already assigned to the class", code="already_assigned")
    return Assignment.objects.create(classroom=classroom, campaign=campaign, target_tasks=target_tasks, due_at=due_at)
