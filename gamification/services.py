"""Game actions: campaigns, rounds, submissions, settlement, progression and leaderboards.

Rules a client cannot see, decided here and documented in the README:

- **Gold checks look like any task, because they are handled like any task.** Golds and ordinary
  tasks are drawn by one ranking (a round always holds an ordinary task); every submission answers
  the same way (provisional participation points), settles by the same rule (its task has
  ``campaign.annotations_per_image`` annotations in the crowd's label and its round is over) and is
  scored against the same kind of reference: the crowd's label, never the gold. A check's agreement
  with its gold is measured server-side when its round is over and reaches the player only as a
  ``CheckReport`` over a block of ``scoring.CHECK_BLOCK_ROUNDS`` rounds, coarsened.
- **Handing back what the server handed out** (the crowd's label shown as the initial mask) is
  copying: flagged, no points. The class-prior initial mask handed back unchanged is the AI's mask,
  counted as an accepted suggestion.
- **Idempotency.** A submission carries a key; the same key and body replay the first response
  exactly, the same key with another body is refused (422), and concurrent duplicates run once.
  A second submission for the same round task with another key is refused (409): no re-submitting
  for points.
- **Late submissions** (after the round expired) are stored — nothing a volunteer drew is lost,
  and fusion may use it — but earn no points.
- **Implausible submissions** (faster than a person can draw, blank, identical to another player's
  mask, or the same mask pasted over several tasks) are stored, earn no points and flag the player
  for researchers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q, Subquery
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import Role, User
from annotations import consensus
from annotations.models import Annotation, Dataset, FusedLabel, GoldStandard, LabelClass, SuggestionUse, Task
from annotations.selectors import dataset_is_researched_by
from annotations.services import mask_parse
from crowdseg import events
from crowdseg.errors import Conflict, DomainError, Forbidden, NotFound, Unprocessable
from inference import services as inference
from inference.engine import rle

from . import badges, progression, scoring
from .models import (
    Assignment,
    Campaign,
    CampaignMember,
    CheckReport,
    EarnedBadge,
    LeaderboardEntry,
    LiveAnswer,
    PlayerFlag,
    PlayerStats,
    Round,
    RoundTask,
    Submission,
)

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")
SUSPICIOUS_AFTER_FLAGS = 5  # flagged submissions before a player is marked for review
SUSPICIOUS_SHARE = 0.3  # ... and at least this share of their submissions
REPEAT_WINDOW = 20  # a player's latest submissions searched for the same mask pasted again
REFRESH_DELAY_S = 2  # submissions to a label class within this long are fused together
MIN_REFERENCE_VOTES = 2  # a crowd label is a reference once this many independent votes made it


# -- campaigns ---------------------------------------------------------------------------------


def campaign_create(*, owner: User, dataset: Dataset, name: str, label_classes: list[LabelClass], **rules) -> Campaign:
    """A campaign over ``dataset`` (which ``owner`` must research) for some of its label classes."""
    if not dataset_is_researched_by(dataset=dataset, user=owner):
        raise Forbidden("only the dataset's researchers can run campaigns on it")
    if not label_classes:
        raise DomainError("a campaign needs at least one label class", fields={"label_classes": ["empty"]})
    foreign = [c.name for c in label_classes if c.dataset_id != dataset.pk]
    if foreign:
        raise DomainError(
            f"label classes not in {dataset.name}: {', '.join(foreign)}", fields={"label_classes": foreign}
        )
    if rules.get("starts_at") and rules.get("ends_at") and rules["ends_at"] <= rules["starts_at"]:
        raise DomainError("ends_at must be after starts_at", fields={"ends_at": ["before starts_at"]})
    with transaction.atomic():
        campaign = Campaign.objects.create(owner=owner, dataset=dataset, name=name, **rules)
        campaign.label_classes.set(label_classes)
    return campaign


@transaction.atomic
def campaign_join(*, player: User, campaign: Campaign, invite_code: str = "") -> CampaignMember:
    """Join ``campaign`` (idempotent). Invite-only campaigns need their code; pupils join only
    campaigns assigned to one of their classes, and need no code for those."""
    if player.role == Role.PUPIL:
        if not Assignment.objects.filter(campaign=campaign, classroom__members__pupil=player).exists():
            raise NotFound(f"campaign {campaign.pk} not found")
        invite_code = campaign.invite_code
    needs_code = campaign.visibility == Campaign.Visibility.INVITE and invite_code != campaign.invite_code
    if needs_code and not CampaignMember.objects.filter(campaign=campaign, player=player).exists():
        raise Forbidden("this campaign needs an invite code", code="invite_required")
    member, created = CampaignMember.objects.get_or_create(campaign=campaign, player=player)
    if created:
        stats = _stats_for_update(player)
        stats.campaigns_joined += 1
        stats.save(update_fields=["campaigns_joined"])
        _badges_award(player, stats)
    return member


def _campaign_open(campaign: Campaign, now: datetime) -> None:
    if campaign.starts_at and now < campaign.starts_at:
        raise Conflict("the campaign has not started yet", code="campaign_not_started")
    if campaign.ends_at and now >= campaign.ends_at:
        raise Conflict("the campaign has ended", code="campaign_ended")


# -- rounds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A task the round could hand out, with what task choice knows about it (never whether it is
    a gold check: golds and ordinary tasks are ranked alike)."""

    task_id: object
    image_id: object
    assigned: int  # times handed out so far (annotations plus rounds still open)
    gain: float = 1.0  # value of one more annotation (annotations.fusion.annotation_gain); 1 if never fused
    settled: bool = False  # the crowd's label is confident enough: no more annotations needed


def rank_by_need(campaign: Campaign, candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Default task choice (``GAME_TASK_RANKER``), active sampling: unsettled images first, those
    whose label gains most from one more annotation first among them (never-annotated ones lead),
    fewest hand-outs breaking ties, random among equals. Settled images, and those handed out
    ``annotations_per_image`` times, come last: only when nothing else is left."""
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    target = campaign.annotations_per_image
    return sorted(shuffled, key=lambda c: (c.settled or c.assigned >= target, -round(c.gain, 3), c.assigned))


def round_pick(ranked: list[Candidate], golds: set, size: int) -> list[tuple[object, bool]]:
    """The round's ``(task_id, is_gold)``: the first ``size`` of ``ranked`` on distinct images, golds
    and ordinary tasks alike, except that a round always holds an ordinary task: a gold that would
    take the last free place of a round with none waits for a later round. Empty when no ordinary
    task is left (a round of checks only would tell which tasks they are)."""
    picked: list[tuple[object, bool]] = []
    images: set = set()
    ordinary = 0
    for candidate in ranked:
        if len(picked) == size:
            break
        is_gold = candidate.task_id in golds
        if candidate.image_id in images or (is_gold and not ordinary and len(picked) == size - 1):
            continue
        images.add(candidate.image_id)
        picked.append((candidate.task_id, is_gold))
        ordinary += not is_gold
    return picked if ordinary else []


def round_start(*, player: User, campaign: Campaign, now: datetime | None = None, seed: int | None = None) -> Round:
    """The player's next round: up to ``campaign.round_size`` tasks on images they never had.

    The caller checks membership (``selectors.campaign_get_for_member``). Gold checks and ordinary
    tasks are ranked by one ranker, which is not told which is which (``round_pick``), and the
    order shuffled. Raises Conflict outside the campaign's dates or when nothing is left. The
    player's rounds that ran out unfinished go to the worker to settle (``round_settle``), not into
    this request: settling scores every submission of a round.
    """
    now = now or timezone.now()
    _campaign_open(campaign, now)
    _rounds_settle_later(player=player, now=now)
    rng = random.Random(seed)
    # One query for every task on an image the player never had (images of other datasets cannot
    # match, so the player's round tasks need no dataset filter).
    seen_images = RoundTask.objects.filter(round__player=player).values("task__image_id")
    rows = (
        Task.objects.filter(label_class__in=campaign.label_classes.all())
        .exclude(image__in=seen_images)
        .annotate(assigned=Count("round_tasks"))
        .values("id", "image_id", "assigned", "gold__id", "practice__id", "fused__gain", "fused__settled")
    )
    golds, candidates = set(), []
    for row in rows:
        # A practice task's expert outline is shown in live sessions: it is never a hidden check.
        if row["gold__id"] is not None and row["practice__id"] is None:
            golds.add(row["id"])
        candidates.append(
            Candidate(
                task_id=row["id"],
                image_id=row["image_id"],
                assigned=row["assigned"],
                gain=1.0 if row["fused__gain"] is None else row["fused__gain"],
                settled=bool(row["fused__settled"]),
            )
        )
    # Row order is the database's: sort before drawing so a seed gives the same round anywhere.
    candidates.sort(key=lambda c: str(c.task_id))
    ranker = import_string(settings.GAME_TASK_RANKER)
    picked = round_pick(ranker(campaign, candidates, rng), golds, campaign.round_size)
    if not picked:
        raise Conflict("you have done every image in this campaign — thank you!", code="campaign_exhausted")
    rng.shuffle(picked)
    with transaction.atomic():
        game_round = Round.objects.create(
            campaign=campaign, player=player, created_at=now, expires_at=now + timedelta(seconds=campaign.round_seconds)
        )
        RoundTask.objects.bulk_create(
            RoundTask(
                round=game_round,
                task_id=task_id,
                position=i,
                is_gold=is_gold,
                suggestion_withheld=rng.random() < campaign.suggestion_withheld_share,
            )
            for i, (task_id, is_gold) in enumerate(picked)
        )
    events.publish(player.pk, "round.started", {"round": str(game_round.id), "expires_at": game_round.expires_at})
    return game_round


def round_is_over(game_round: Round, now: datetime) -> bool:
    return game_round.completed_at is not None or now >= game_round.expires_at


def rounds_settle_expired(*, now: datetime | None = None) -> int:
    """Settle every round that is over but not settled yet (celery beat). Safe to run twice."""
    now = now or timezone.now()
    rounds = Round.objects.filter(settled=False).filter(Q(completed_at__isnull=False) | Q(expires_at__lte=now))
    count = 0
    for game_round in rounds.select_related("campaign"):
        round_settle(game_round=game_round, now=now)
        count += 1
    return count


def _rounds_settle_later(*, player: User, now: datetime) -> None:
    """Hand the player's rounds that ran out unfinished to the worker once this transaction commits.
    (A completed round was handed over by its last submission; the periodic
    ``rounds_settle_expired`` catches anything else, this only settles sooner.)"""
    from . import tasks  # the Celery tasks import this module

    expired = Round.objects.filter(player=player, settled=False, completed_at__isnull=True, expires_at__lte=now)
    for round_id in expired.values_list("pk", flat=True):
        transaction.on_commit(lambda round_id=round_id: tasks.round_settle.delay(str(round_id)))


# -- submissions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitOutcome:
    status: int
    body: dict
    replayed: bool


def submission_submit(
    *, player: User, round_id, task_id, data: dict, idempotency_key: str | None, now: datetime | None = None
) -> SubmitOutcome:
    """Store the player's mask for one task of their round; see the module docstring for the rules.

    ``data``: ``rle`` (COCO RLE) or ``polygons``, ``time_spent_ms`` (int, client-measured),
    ``suggestion_use`` (none/accepted/edited), optional ``prompt`` (the box/points the suggestion
    came from). Raises DomainError (400 invalid, 404 not your round task, 409 already submitted,
    422 key reused with another body).
    """
    now = now or timezone.now()
    if not idempotency_key:
        raise DomainError("an Idempotency-Key is required", code="idempotency_key_missing")
    if not IDEMPOTENCY_KEY.match(idempotency_key):
        raise DomainError("Idempotency-Key must be 8-64 of A-Z a-z 0-9 _ . : -", code="idempotency_key_invalid")
    request_sha = _request_sha(round_id, task_id, data)
    keyed = Submission.objects.filter(player=player, idempotency_key=idempotency_key)
    # The round task and whether this key was used before, in one query.
    round_task = (
        RoundTask.objects.select_related("round__campaign", "task__image")
        .filter(round_id=round_id, round__player=player, task_id=task_id)
        .annotate(keyed_submission=Subquery(keyed.values("pk")[:1]))
        .first()
    )
    used = round_task.keyed_submission if round_task is not None else keyed.values_list("pk", flat=True).first()
    if used is not None:
        return _replay(Submission.objects.get(pk=used), request_sha)
    if round_task is None:
        raise NotFound("no such task in your rounds")
    image = round_task.task.image
    mask = mask_parse(height=image.height, width=image.width, rle_mask=data.get("rle"), polygons=data.get("polygons"))
    encoded = rle.encode(mask)
    mask_sha = inference.mask_digest(encoded)
    try:
        with transaction.atomic():
            list(RoundTask.objects.select_for_update().filter(pk=round_task.pk).values_list("pk", flat=True))
            # Under the lock, in a statement of its own (READ COMMITTED: a fresh snapshot, so it sees
            # what a concurrent duplicate holding the lock committed): that one is replayed,
            # anything else refused.
            found = _submission_findings(player, round_task, mask_sha)
            if found.earlier is not None:
                if found.earlier_key == idempotency_key:
                    return _replay(Submission.objects.get(pk=found.earlier), request_sha)
                raise Conflict("this task of your round already has a submission", code="already_submitted")
            submission = _submission_store(
                player, round_task, data, idempotency_key, request_sha, mask, encoded, mask_sha, found, now
            )
    except IntegrityError:
        # A concurrent duplicate with the same key committed first.
        existing = Submission.objects.filter(player=player, idempotency_key=idempotency_key).first()
        if existing is None:
            raise Conflict("this task of your round already has a submission", code="already_submitted") from None
        return _replay(existing, request_sha)
    return SubmitOutcome(submission.response_status, submission.response_body, replayed=False)


def _request_sha(round_id, task_id, data: dict) -> str:
    canonical = json.dumps({"round": str(round_id), "task": str(task_id), "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(submission: Submission, request_sha: str) -> SubmitOutcome:
    if submission.request_sha256 != request_sha:
        raise Unprocessable(
            "this Idempotency-Key was used for a different submission; use a new key for a new submission",
            code="idempotency_key_reused",
        )
    return SubmitOutcome(submission.response_status, submission.response_body, replayed=True)


def _submission_store(
    player: User,
    round_task: RoundTask,
    data: dict,
    key: str,
    request_sha: str,
    mask: np.ndarray,
    encoded: dict,
    mask_sha: str,
    found: _Findings,
    now: datetime,
) -> Submission:
    game_round = round_task.round
    campaign = game_round.campaign
    time_ms = int(data.get("time_spent_ms", 0))
    suggestion_use = data.get("suggestion_use", "none")
    blank = not mask.any()
    handed_back = inference.initial_mask_handed_out(
        task=round_task.task, digest=mask_sha, crowd_label=found.crowd_label
    )
    if handed_back == "class_prior":
        suggestion_use = SuggestionUse.ACCEPTED  # the AI's mask unchanged: not an independent vote
    # Two players accepting the same suggestion unchanged may legitimately agree to the pixel.
    copied = found.same_mask_unanchored if suggestion_use == SuggestionUse.ACCEPTED else found.same_mask
    late = now >= game_round.expires_at
    reported = time_ms + found.round_reported_ms
    wall_ms = int((now - game_round.created_at).total_seconds() * 1000)

    flag = Submission.Flag.NONE
    if late:
        flag = Submission.Flag.LATE
    elif scoring.implausibly_fast(time_ms, reported, wall_ms):
        flag = Submission.Flag.TOO_FAST
    elif blank:
        flag = Submission.Flag.BLANK
    elif handed_back == "consensus" or copied:
        flag = Submission.Flag.COPIED  # the crowd's label handed back, or another player's mask
    elif found.repeated:
        flag = Submission.Flag.REPEATED

    annotation = Annotation.objects.create(
        task=round_task.task,
        annotator=player,
        mask=encoded,
        area=int(mask.sum()),
        suggestion_use=suggestion_use,
        suggestion_prompt=data.get("prompt"),
        time_spent_ms=time_ms,
        client_key=key,
    )
    provisional = scoring.provisional_points(
        plausible=flag in (Submission.Flag.NONE, Submission.Flag.BLANK), blank=blank
    )
    submitted, total = found.round_submitted + 1, found.round_tasks
    completed = submitted == total and game_round.completed_at is None and not late
    body = {
        "task": str(round_task.task_id),
        "round": str(game_round.id),
        "status": Submission.Status.PROVISIONAL,
        "points": provisional,
        "on_time": not late,
        "round_progress": {"submitted": submitted, "total": total, "completed": submitted == total},
    }
    submission = Submission.objects.create(
        round_task=round_task,
        player=player,
        annotation=annotation,
        idempotency_key=key,
        request_sha256=request_sha,
        response_status=201,
        response_body=body,
        mask_sha256=mask_sha,
        flag=flag,
        provisional_points=provisional,
        submitted_at=now,
    )

    stats = _stats_for_update(player)
    stats.tasks_submitted += 1
    if player.role != Role.PUPIL:  # children get no streaks to keep up (ICO AADC: no engagement nudges)
        today = progression.local_day(now, player.time_zone)
        stats.streak = progression.streak_after(last_day=stats.last_played_day, streak=stats.streak, today=today)
        stats.best_streak = max(stats.best_streak, stats.streak)
        stats.last_played_day = max(today, stats.last_played_day or today)
    if completed:
        Round.objects.filter(pk=game_round.pk).update(completed_at=now)
        stats.rounds_completed += 1
    if flag not in (Submission.Flag.NONE, Submission.Flag.LATE):
        _flag(stats, submission, campaign, flag)
    stats.save()
    _badges_award(player, stats)

    if completed:
        events.publish(player.pk, "round.completed", {"round": str(game_round.id)})
    label_class_id, round_id = round_task.task.label_class_id, game_round.id
    # A live session's pupils' rounds settle together when the teacher's round closes
    # (``live_sessions.live_round_close``): one job for the class, not one per pupil.
    settle_now = completed and not found.live
    transaction.on_commit(lambda: _after_submit(label_class_id, round_id, settle_now))
    return submission


def _after_submit(label_class_id: int, round_id, round_completed: bool) -> None:
    from . import tasks  # the Celery tasks import this module

    if round_completed:
        tasks.round_settle.delay(str(round_id))
    # One refresh per label class per REFRESH_DELAY_S, however many submissions arrive meanwhile.
    if cache.add(_refresh_flag(label_class_id), 1, timeout=REFRESH_DELAY_S * 10):
        tasks.label_class_refresh.apply_async((label_class_id,), countdown=REFRESH_DELAY_S)


def _refresh_flag(label_class_id: int) -> str:
    return f"gamification:refresh-scheduled:{label_class_id}"


def campaign_settle(*, campaign: Campaign) -> int:
    """Settle every submission of the campaign that its fused labels and golds now allow."""
    tasks = Task.objects.filter(label_class__in=campaign.label_classes.all(), annotations__isnull=False).distinct()
    return sum(task_settle(task=task) for task in tasks)


def campaign_fuse(*, campaign: Campaign) -> int:
    """Fuse the campaign's label classes from scratch (all images jointly), then settle. Returns the
    number of submissions settled."""
    for label_class in campaign.label_classes.all():
        consensus.fusion_run(label_class=label_class)
    return campaign_settle(campaign=campaign)


def label_class_refresh(*, label_class_id: int) -> int:
    """Fuse the label class's newly annotated tasks, then settle what they allow. Returns the
    number of submissions settled."""
    cache.delete(_refresh_flag(label_class_id))  # submissions from now on schedule the next run
    label_class = LabelClass.objects.filter(pk=label_class_id).first()
    if label_class is None:
        return 0
    refreshed = consensus.fusion_refresh(label_class=label_class)
    return sum(task_settle(task=task) for task in refreshed)


@dataclass(frozen=True)
class _Findings:
    """What the submission rules read about a round task before storing a mask, in one statement."""

    earlier: int | None  # the round task's submission, if it has one, and its idempotency key
    earlier_key: str | None
    crowd_label: dict | None  # the task's crowd label as handed out as an initial mask (RLE)
    round_tasks: int  # the round's tasks, how many have a submission, and their reported drawing time
    round_submitted: int
    round_reported_ms: int
    same_mask: bool  # another player submitted the same mask for this task...
    same_mask_unanchored: bool  # ... without accepting a suggestion unchanged
    repeated: bool  # the same mask among the player's latest REPEAT_WINDOW submissions, on other tasks
    live: bool  # the round is a pupil's place in a live session's round


def _submission_findings(player: User, round_task: RoundTask, mask_sha: str) -> _Findings:
    """Read under the round task's lock. One statement in plain SQL rather than one per rule: a
    class's answers arrive within seconds of each other, and each costs the server's database
    thread a round trip and the ORM's compilation per rule (``bench/classroom_live.py``)."""
    table = {
        model.__name__: connection.ops.quote_name(model._meta.db_table)
        for model in (Annotation, FusedLabel, LiveAnswer, RoundTask, Submission)
    }
    sql = """
        WITH here AS (SELECT id, round_id, task_id FROM {RoundTask} WHERE id = %(round_task)s)
        SELECT
            MAX(CASE WHEN rt.id = here.id THEN s.id END),
            MAX(CASE WHEN rt.id = here.id THEN s.idempotency_key END),
            (SELECT CAST(f.mask AS TEXT) FROM {FusedLabel} f
                WHERE f.task_id = here.task_id AND f.votes >= %(crowd_votes)s ORDER BY f.id LIMIT 1),
            COUNT(rt.id),
            COUNT(s.id),
            COALESCE(SUM(a.time_spent_ms), 0),
            EXISTS (SELECT 1 FROM {Submission} o JOIN {RoundTask} ort ON ort.id = o.round_task_id
                WHERE ort.task_id = here.task_id AND o.mask_sha256 = %(sha)s AND o.player_id <> %(player)s),
            EXISTS (SELECT 1 FROM {Submission} o JOIN {RoundTask} ort ON ort.id = o.round_task_id
                JOIN {Annotation} oa ON oa.id = o.annotation_id
                WHERE ort.task_id = here.task_id AND o.mask_sha256 = %(sha)s AND o.player_id <> %(player)s
                AND oa.suggestion_use <> %(accepted)s),
            EXISTS (SELECT 1 FROM {Submission} r JOIN {RoundTask} rrt ON rrt.id = r.round_task_id
                WHERE r.id IN (SELECT id FROM {Submission} WHERE player_id = %(player)s
                               ORDER BY submitted_at DESC LIMIT %(window)s)
                AND r.mask_sha256 = %(sha)s AND rrt.task_id <> here.task_id),
            EXISTS (SELECT 1 FROM {LiveAnswer} la WHERE la.round_id = here.round_id)
        FROM here
        JOIN {RoundTask} rt ON rt.round_id = here.round_id
        LEFT JOIN {Submission} s ON s.round_task_id = rt.id
        LEFT JOIN {Annotation} a ON a.id = s.annotation_id
        GROUP BY here.id, here.round_id, here.task_id
    """.format(**table)
    params = {
        "round_task": round_task.pk,
        "player": player.pk,
        "sha": mask_sha,
        "crowd_votes": inference.CROWD_LABEL_MIN_VOTES,
        "accepted": SuggestionUse.ACCEPTED.value,
        "window": REPEAT_WINDOW,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        earlier, key, crowd_label, tasks, submitted, reported, same, unanchored, repeated, live = cursor.fetchone()
    return _Findings(
        earlier=earlier,
        earlier_key=key,
        crowd_label=None if crowd_label is None else json.loads(crowd_label),
        round_tasks=tasks,
        round_submitted=submitted,
        round_reported_ms=int(reported),
        same_mask=bool(same),
        same_mask_unanchored=bool(unanchored),
        repeated=bool(repeated),
        live=bool(live),
    )


def _flag(stats: PlayerStats, submission: Submission, campaign: Campaign, reason: str) -> None:
    PlayerFlag.objects.create(player=submission.player, campaign=campaign, submission=submission, reason=reason)
    stats.flags += 1
    if stats.flags >= SUSPICIOUS_AFTER_FLAGS and stats.flags >= SUSPICIOUS_SHARE * stats.tasks_submitted:
        stats.suspicious = True


# -- settlement --------------------------------------------------------------------------------


def task_reference(task: Task, *, annotations: int) -> np.ndarray | None:
    """What every submission of ``task`` is scored against, gold check or not: the crowd's label
    (``annotations.consensus``: on a gold task the votes' own label, never the gold) once it fuses
    at least ``annotations`` annotations from ``MIN_REFERENCE_VOTES`` or more independent votes;
    else None."""
    fused = FusedLabel.objects.filter(
        task=task, votes__gte=MIN_REFERENCE_VOTES, annotation_count__gte=annotations
    ).first()
    return None if fused is None else rle.decode(fused.mask)


def task_settle(*, task: Task, now: datetime | None = None) -> int:
    """Settle the provisional submissions of ``task`` whose rounds are over, once the task has
    enough annotations and the crowd's label includes them (the same rule for every task). Returns
    how many settled. Safe to run twice and concurrently."""
    now = now or timezone.now()
    campaign_targets = Campaign.objects.filter(rounds__round_tasks__task=task).values_list(
        "annotations_per_image", flat=True
    )
    target = min(campaign_targets, default=None)
    if target is None or Annotation.objects.filter(task=task).count() < target:
        return 0
    pending = list(
        Submission.objects.filter(round_task__task=task, status=Submission.Status.PROVISIONAL)
        .filter(Q(round_task__round__completed_at__isnull=False) | Q(round_task__round__expires_at__lte=now))
        .values_list("pk", flat=True)
    )
    if not pending:
        return 0
    reference = task_reference(task, annotations=target)
    if reference is None:
        return 0
    return sum(_submission_settle(pk, reference, now) for pk in pending)


def round_settle(*, game_round: Round, now: datetime | None = None) -> None:
    """Round over: settle what can be, measure its gold checks against their golds (server-side),
    mark the round settled, tell the player, and report their checks if this round completed a
    block (``check_reports_publish``)."""
    rounds_settle(rounds=[game_round], now=now)


def rounds_settle(*, rounds: list[Round], now: datetime | None = None) -> None:
    """``round_settle`` for rounds that end together (a live round's class): each of their tasks
    is settled once, however many of the rounds hold it."""
    now = now or timezone.now()
    round_ids = [game_round.pk for game_round in rounds]
    for task in Task.objects.filter(round_tasks__round__in=round_ids).distinct():
        task_settle(task=task, now=now)
    checks_measure(round_ids=round_ids)
    for game_round in rounds:
        if Round.objects.filter(pk=game_round.pk, settled=False).update(settled=True):
            events.publish(game_round.player_id, "round.settled", {"round": str(game_round.id)})
            check_reports_publish(player=game_round.player, campaign=game_round.campaign, now=now)


def _submission_settle(pk: int, reference: np.ndarray, now: datetime) -> int:
    with transaction.atomic():
        submission = (
            Submission.objects.select_for_update()
            .select_related("annotation", "round_task__round__campaign", "player")
            .filter(pk=pk, status=Submission.Status.PROVISIONAL)
            .first()
        )
        if submission is None:
            return 0  # settled by a concurrent run
        campaign = submission.round_task.round.campaign
        measured = scoring.quality(rle.decode(submission.annotation.mask), reference)
        earns = submission.flag in (Submission.Flag.NONE, Submission.Flag.BLANK)
        points = (
            scoring.points(measured.value, submission.annotation.time_spent_ms, campaign.task_seconds * 1000)
            if earns
            else 0
        )
        submission.status = Submission.Status.SETTLED
        submission.quality, submission.dice, submission.surface_dice = (
            measured.value,
            measured.dice,
            measured.surface_dice,
        )
        submission.points, submission.settled_at = points, now
        submission.save(update_fields=["status", "quality", "dice", "surface_dice", "points", "settled_at"])
        player = submission.player
        stats = _stats_for_update(player)
        stats.xp += points
        stats.level = progression.level_for_xp(stats.xp)
        stats.save()
        _badges_award(player, stats)
        if points:
            leaderboard_add(player=player, campaign=campaign, points=points, now=now)
        events.publish(
            player.pk,
            "score.settled",
            {
                "submission": submission.pk,
                "task": str(submission.round_task.task_id),
                "round": str(submission.round_task.round_id),
                "points": points,
                "quality": round(measured.value, 4),
                "level": stats.level,
                "xp": stats.xp,
            },
        )
    return 1


# -- gold checks -------------------------------------------------------------------------------


def checks_measure(*, round_ids: list) -> int:
    """Measure the gold checks of these rounds against their golds: ``Submission.gold_quality`` and
    ``gold_dice``, server-side only (check reports, anchoring, review). Returns how many were
    measured; safe to run twice."""
    pending = list(
        Submission.objects.filter(
            round_task__round__in=round_ids, round_task__is_gold=True, gold_quality__isnull=True
        ).values_list("pk", "round_task__task_id", "annotation__mask")
    )
    if not pending:
        return 0
    golds = dict(
        GoldStandard.objects.filter(task__in={task_id for _, task_id, _ in pending}).values_list("task_id", "mask")
    )
    measured = 0
    for pk, task_id, mask in pending:
        gold = golds.get(task_id)
        if gold is None:  # the gold was removed since the round started
            continue
        agreement = scoring.quality(rle.decode(mask), rle.decode(gold))
        measured += Submission.objects.filter(pk=pk, gold_quality__isnull=True).update(
            gold_quality=agreement.value, gold_dice=agreement.dice
        )
    return measured


def check_reports_publish(*, player: User, campaign: Campaign, now: datetime | None = None) -> list[CheckReport]:
    """Report the player's accuracy on gold checks for every block of ``scoring.CHECK_BLOCK_ROUNDS``
    consecutive rounds of ``campaign`` (in the order they started) that is over and not reported
    yet: ``scoring.check_accuracy`` over the block's checks, the ``checks.reported`` event, and the
    checks counted into the player's stats (and badges) only then. Safe to run twice and
    concurrently: one report per block."""
    now = now or timezone.now()
    rounds = list(
        Round.objects.filter(player=player, campaign=campaign).order_by("created_at", "pk").values_list("pk", "settled")
    )
    reported = set(CheckReport.objects.filter(player=player, campaign=campaign).values_list("block", flat=True))
    published = []
    for block in range(len(rounds) // scoring.CHECK_BLOCK_ROUNDS):
        members = rounds[block * scoring.CHECK_BLOCK_ROUNDS : (block + 1) * scoring.CHECK_BLOCK_ROUNDS]
        if block in reported or not all(settled for _, settled in members):
            continue
        report = _check_report(player, campaign, block, [pk for pk, _ in members], now)
        if report is not None:
            published.append(report)
    return published


def _check_report(player: User, campaign: Campaign, block: int, round_ids: list, now: datetime) -> CheckReport | None:
    checks_measure(round_ids=round_ids)  # late submissions after their round settled
    qualities = list(
        Submission.objects.filter(
            round_task__round__in=round_ids, round_task__is_gold=True, gold_quality__isnull=False
        ).values_list("gold_quality", flat=True)
    )
    accuracy = scoring.check_accuracy(qualities, minimum=scoring.CHECK_MIN_CHECKS, step=scoring.CHECK_STEP)
    try:
        with transaction.atomic():
            report = CheckReport.objects.create(
                player=player,
                campaign=campaign,
                block=block,
                checks=len(qualities),
                mean_quality=sum(qualities) / len(qualities) if qualities else None,
                accuracy=accuracy,
                created_at=now,
            )
            stats = _stats_for_update(player)
            stats.golds_settled += len(qualities)
            stats.gold_quality_sum += sum(qualities)
            stats.perfect_golds += sum(q >= badges.PERFECT_QUALITY for q in qualities)
            stats.save()
            _badges_award(player, stats)
            events.publish(
                player.pk,
                "checks.reported",
                {"campaign": campaign.pk, "rounds": [str(pk) for pk in round_ids], "check_accuracy": accuracy},
            )
    except IntegrityError:  # reported concurrently
        return None
    return report


# -- progression -------------------------------------------------------------------------------


def _stats_for_update(player: User) -> PlayerStats:
    """The player's stats row, locked for this transaction (created on first use)."""
    stats = PlayerStats.objects.select_for_update().filter(player=player).first()
    if stats is None:  # a concurrent first use may create it too: whichever comes second adds nothing
        PlayerStats.objects.bulk_create([PlayerStats(player=player)], ignore_conflicts=True)
        stats = PlayerStats.objects.select_for_update().get(player=player)
    return stats


def _badges_award(player: User, stats: PlayerStats) -> None:
    snapshot = badges.StatsSnapshot(
        rounds_completed=stats.rounds_completed,
        tasks_submitted=stats.tasks_submitted,
        golds_settled=stats.golds_settled,
        perfect_golds=stats.perfect_golds,
        best_streak=stats.best_streak,
        level=stats.level,
        campaigns_joined=stats.campaigns_joined,
    )
    earned = badges.badges_earned(snapshot)
    if not earned:
        return
    have = set(EarnedBadge.objects.filter(player=player).values_list("code", flat=True))
    for badge in earned:
        if badge.code in have:
            continue
        _, created = EarnedBadge.objects.get_or_create(player=player, code=badge.code)
        if created:
            events.publish(
                player.pk, "badge.earned", {"badge": badge.code, "name": badge.name, "description": badge.description}
            )


# -- leaderboards ------------------------------------------------------------------------------


def leaderboard_boards(campaign: Campaign | None, now: datetime) -> list[str]:
    week = progression.week_key(now)
    boards = ["global:all", f"global:{week}"]
    if campaign is not None:
        boards += [f"campaign:{campaign.pk}:all", f"campaign:{campaign.pk}:{week}"]
    return boards


def leaderboard_add(*, player: User, campaign: Campaign | None, points: int, now: datetime) -> None:
    """Add settled points to every board the player is on (atomic increments, safe concurrently).
    Pupils are on no board: their points count in their class only."""
    if player.role == Role.PUPIL:
        return
    for board in leaderboard_boards(campaign, now):
        if LeaderboardEntry.objects.filter(board=board, player=player).update(points=F("points") + points):
            continue
        try:
            with transaction.atomic():
                LeaderboardEntry.objects.create(board=board, player=player, points=points)
        except IntegrityError:  # created concurrently
            LeaderboardEntry.objects.filter(board=board, player=player).update(points=F("points") + points)
    if campaign is not None:
        events.publish(player.pk, "leaderboard.changed", {"campaign": campaign.pk})
