"""The game: campaigns over a dataset, rounds of tasks, submissions and what they earn.

A ``Round`` is what a player gets when they press play: a few ``RoundTask``s, some of which are
gold checks (``RoundTask.is_gold``, never serialised to a player). A ``Submission`` is the answer to
one round task; it stores the first response it produced so a retried request gets exactly the same
answer (idempotency), and the annotation it created. Points are provisional until the task settles
against the crowd's label, gold check or not; XP and leaderboards count settled points. A check's
agreement with its gold is measured server-side (``Submission.gold_quality``) and reaches the
player only as a ``CheckReport``: the mean over a block of rounds.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from annotations.models import Annotation, Dataset, LabelClass, Task


def _invite_code() -> str:
    return secrets.token_urlsafe(6)


class Campaign(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Anyone can join"
        INVITE = "invite", "Invite code needed"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="campaigns_owned")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="campaigns")
    label_classes = models.ManyToManyField(LabelClass, related_name="campaigns")
    visibility = models.CharField(max_length=6, choices=Visibility.choices, default=Visibility.PUBLIC)
    invite_code = models.CharField(max_length=16, default=_invite_code, unique=True)
    round_size = models.PositiveSmallIntegerField(default=10, help_text="Tasks per round")
    round_seconds = models.PositiveIntegerField(default=900, help_text="Time limit of a round, seconds")
    task_seconds = models.PositiveIntegerField(default=30, help_text="Expected time per task (speed bonus)")
    annotations_per_image = models.PositiveSmallIntegerField(
        default=5, help_text="Annotations a task needs before it settles and stops being handed out first"
    )
    gold_rate = models.FloatField(default=0.15, help_text="Share of a round that is hidden gold checks")
    suggestion_withheld_share = models.FloatField(
        default=0.0,
        help_text="Share of tasks (gold or not alike) shown without the AI suggestion, to measure anchoring",
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(gold_rate__gte=0) & models.Q(gold_rate__lte=0.5), name="campaign_gold_rate_range"
            ),
            models.CheckConstraint(
                condition=models.Q(suggestion_withheld_share__gte=0) & models.Q(suggestion_withheld_share__lte=1),
                name="campaign_withheld_share_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignMember(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="members")
    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="campaign_memberships")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "player"], name="member_unique")]

    def __str__(self) -> str:
        return f"{self.player} in {self.campaign}"


class Round(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rounds")
    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rounds")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    settled = models.BooleanField(default=False, help_text="Round-end settlement ran")

    class Meta:
        indexes = [models.Index(fields=["player", "created_at"])]

    def __str__(self) -> str:
        return f"round {self.id} of {self.player}"


class RoundTask(models.Model):
    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="round_tasks")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="round_tasks")
    position = models.PositiveSmallIntegerField()
    is_gold = models.BooleanField(default=False)  # server-side only
    suggestion_withheld = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["round", "task"], name="roundtask_unique")]
        ordering = ["position"]

    def __str__(self) -> str:
        return f"task {self.position + 1} of round {self.round_id}"


class Submission(models.Model):
    class Status(models.TextChoices):
        PROVISIONAL = "provisional", "Provisional"
        SETTLED = "settled", "Settled"

    class Flag(models.TextChoices):
        NONE = "", "None"
        TOO_FAST = "too_fast", "Faster than a person can draw"
        BLANK = "blank", "Empty mask"
        COPIED = "copied", "Identical to another player's mask"
        REPEATED = "repeated", "Same mask as this player's other tasks"
        LATE = "late", "After the round expired"

    round_task = models.OneToOneField(RoundTask, on_delete=models.CASCADE, related_name="submission")
    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    annotation = models.OneToOneField(Annotation, on_delete=models.CASCADE, related_name="submission")
    idempotency_key = models.CharField(max_length=64)
    request_sha256 = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    mask_sha256 = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=11, choices=Status.choices, default=Status.PROVISIONAL)
    flag = models.CharField(max_length=8, choices=Flag.choices, default=Flag.NONE, blank=True)
    provisional_points = models.PositiveIntegerField(default=0)
    points = models.PositiveIntegerField(null=True, blank=True, help_text="Settled")
    quality = models.FloatField(
        null=True, blank=True, help_text="Settled: mean of Dice and surface Dice against the crowd's label"
    )
    dice = models.FloatField(null=True, blank=True)
    surface_dice = models.FloatField(null=True, blank=True)
    gold_quality = models.FloatField(
        null=True, blank=True, help_text="Gold checks, once their round is over: quality against the gold (server-side)"
    )
    gold_dice = models.FloatField(null=True, blank=True, help_text="Gold checks: Dice against the gold (server-side)")
    submitted_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["player", "idempotency_key"], name="submission_unique_key"),
        ]
        indexes = [models.Index(fields=["player", "submitted_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.player} on {self.round_task}"


class PlayerStats(models.Model):
    """One row per player: progression and the evidence the game uses to trust them."""

    player = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="game_stats")
    xp = models.PositiveIntegerField(default=0)
    level = models.PositiveSmallIntegerField(default=1)
    rounds_completed = models.PositiveIntegerField(default=0)
    campaigns_joined = models.PositiveIntegerField(default=0)
    tasks_submitted = models.PositiveIntegerField(default=0)
    golds_settled = models.PositiveIntegerField(default=0, help_text="Gold checks counted in check reports")
    gold_quality_sum = models.FloatField(default=0.0)
    perfect_golds = models.PositiveIntegerField(default=0)
    streak = models.PositiveIntegerField(default=0)
    best_streak = models.PositiveIntegerField(default=0)
    last_played_day = models.DateField(null=True, blank=True, help_text="In the player's time zone")
    flags = models.PositiveIntegerField(default=0, help_text="Suspicious submissions")
    suspicious = models.BooleanField(default=False, db_index=True)

    class Meta:
        verbose_name_plural = "player stats"

    def __str__(self) -> str:
        return f"stats of {self.player}"


class CheckReport(models.Model):
    """A player's accuracy on hidden gold checks over one block of consecutive rounds of a campaign.

    Block ``b`` is the player's rounds ``b * N`` to ``b * N + N - 1`` of the campaign in the order
    they started (``N = scoring.CHECK_BLOCK_ROUNDS``), reported once all of them are over: the only
    feedback on checks a player gets, never per round or per task, so it identifies no task.
    ``accuracy`` is what the player sees (coarsened; None with too few checks); ``mean_quality``
    and ``checks`` stay server-side.
    """

    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="check_reports")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="check_reports")
    block = models.PositiveIntegerField()
    checks = models.PositiveIntegerField()
    mean_quality = models.FloatField(null=True, blank=True)
    accuracy = models.FloatField(null=True, blank=True, help_text="Shown to the player")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["player", "campaign", "block"], name="check_report_unique")]

    def __str__(self) -> str:
        return f"checks of {self.player} in {self.campaign}, block {self.block}"


class EarnedBadge(models.Model):
    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="badges")
    code = models.CharField(max_length=32)
    earned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["player", "code"], name="badge_unique")]

    def __str__(self) -> str:
        return f"{self.code} of {self.player}"


class LeaderboardEntry(models.Model):
    """A player's settled points on one board.

    ``board`` names the board: ``global:all``, ``global:2026-W48``, ``campaign:7:all``,
    ``campaign:7:2026-W48``. Rank = 1 + players with more points, counted on the (board, points)
    index: no sort of the table per request.
    """

    board = models.CharField(max_length=48)
    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leaderboard_entries")
    points = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["board", "player"], name="leaderboard_unique_player")]
        indexes = [models.Index(fields=["board", "-points", "player"], name="leaderboard_rank")]

    def __str__(self) -> str:
        return f"{self.player} on {self.board}: {self.points}"


class PlayerFlag(models.Model):
    """A suspicious submission, for researchers to review."""

    player = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="game_flags")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="flags")
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="flags")
    reason = models.CharField(max_length=8, choices=Submission.Flag.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["campaign", "created_at"])]

    def __str__(self) -> str:
        return f"{self.reason} by {self.player}"


# Join codes a child can type: no 0/O, 1/I/L, 5/S or 2/Z to mix up; compared case-insensitively.
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRTUVWXY346789"
JOIN_CODE_LENGTH = 6
JOIN_CODE_DAYS = 14


def join_code_generate() -> str:
    """A fresh class join code: 6 characters of ``JOIN_CODE_ALPHABET`` (27**6, about 3.9e8 codes)."""
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


def _join_code_expiry():
    return timezone.now() + timedelta(days=JOIN_CODE_DAYS)


class Classroom(models.Model):
    """A teacher's class. Pupils join with ``join_code`` (until ``join_code_expires_at``; the
    teacher can rotate it) or are added to the roster by the teacher. Everything a class holds about
    its pupils is visible only to its teacher and, by pseudonym, to its pupils.

    ``retention_days``: a pupil's personal data in this class is kept this many days after they
    joined it; then the membership goes, and a pupil in no other class is erased
    (``gamification.tasks.classrooms_enforce_retention``).
    """

    teacher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="classrooms_taught")
    name = models.CharField(max_length=120)
    join_code = models.CharField(max_length=JOIN_CODE_LENGTH, unique=True, default=join_code_generate)
    join_code_expires_at = models.DateTimeField(default=_join_code_expiry)
    retention_days = models.PositiveIntegerField(
        default=365, validators=[MinValueValidator(1), MaxValueValidator(3 * 365)], help_text="Days pupil data is kept"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["teacher", "created_at"])]

    def __str__(self) -> str:
        return self.name


class ClassMember(models.Model):
    """A pupil in a class (a pupil may be in several). ``real_name`` is what the teacher calls
    them, shown to the teacher only; everyone else sees the pupil's generated ``User.pseudonym``."""

    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE, related_name="members")
    pupil = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="class_memberships")
    real_name = models.CharField(max_length=120, blank=True)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["classroom", "pupil"], name="class_member_unique")]
        indexes = [models.Index(fields=["joined_at"])]

    def __str__(self) -> str:
        return f"{self.pupil} in {self.classroom}"


class Assignment(models.Model):
    """A campaign set for a class: each pupil should submit ``target_tasks`` tasks by ``due_at``."""

    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE, related_name="assignments")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="assignments")
    target_tasks = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(10_000)])
    due_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["classroom", "campaign"], name="assignment_unique_campaign"),
            models.CheckConstraint(condition=models.Q(target_tasks__gte=1), name="assignment_target_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} for {self.classroom}"


# -- live sessions -----------------------------------------------------------------------------


class PracticeTask(models.Model):
    """A task whose expert outline (its ``GoldStandard``) is teaching material: a class is shown it
    over their fused mask after a live round. A practice task is never a hidden check
    (``services.round_start`` hands it out as an ordinary task), so showing it gives no check away."""

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="practice")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"practice task {self.task_id}"


def _session_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


class LiveSession(models.Model):
    """A lesson paced from the front of the room (``gamification.live_sessions``): pupils of
    ``classroom`` join with ``code`` (6 digits, unique among sessions not ended), the teacher
    starts each round for everyone at once, and the class's masks fuse into one label per round."""

    class State(models.TextChoices):
        LOBBY = "lobby", "Waiting for pupils"
        ROUND = "round", "A round is running"
        PAUSED = "paused", "A round is paused"
        RESULTS = "results", "Showing a round's results"
        ENDED = "ended", "Ended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    classroom = models.ForeignKey("Classroom", on_delete=models.CASCADE, related_name="live_sessions")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="live_sessions")
    code = models.CharField(max_length=6, default=_session_code)
    state = models.CharField(max_length=7, choices=State.choices, default=State.LOBBY)
    round_seconds = models.PositiveSmallIntegerField(default=60, help_text="Time for each round, seconds")
    capacity = models.PositiveSmallIntegerField(default=40, help_text="Pupils who may join")
    paused_remaining_ms = models.PositiveIntegerField(null=True, blank=True, help_text="While paused")
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["code"], condition=~models.Q(state="ended"), name="live_session_open_code"),
        ]

    def __str__(self) -> str:
        return f"live session {self.code} of {self.classroom}"


class LiveParticipant(models.Model):
    """A pupil who joined a live session; rejoining (a dropped phone) finds the same row."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="participants")
    pupil = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="live_participations")
    joined_at = models.DateTimeField(default=timezone.now)
    kicked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "pupil"], name="live_participant_unique")]

    def __str__(self) -> str:
        return f"{self.pupil} in {self.session}"


class LiveRound(models.Model):
    """One image the whole class segments at once. ``result`` (once closed): the class's fused
    label and each pupil's score against it (``live_sessions.live_round_close``)."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveSmallIntegerField()
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="live_rounds")
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField(help_text="Moves on resume after a pause")
    closed_at = models.DateTimeField(null=True, blank=True)
    skipped = models.BooleanField(default=False)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "number"], name="live_round_unique_number")]
        ordering = ["number"]

    def __str__(self) -> str:
        return f"round {self.number} of {self.session}"


class LiveAnswer(models.Model):
    """A pupil's place in a live round: their own one-task game ``Round``, so an answer goes down
    the ordinary submission path (durable, idempotent, fused with the crowd's)."""

    live_round = models.ForeignKey(LiveRound, on_delete=models.CASCADE, related_name="answers")
    participant = models.ForeignKey(LiveParticipant, on_delete=models.CASCADE, related_name="answers")
    round = models.OneToOneField(Round, on_delete=models.CASCADE, related_name="live_answer")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["live_round", "participant"], name="live_answer_unique")]

    def __str__(self) -> str:
        return f"{self.participant} in {self.live_round}"
