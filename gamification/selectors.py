"""Reads of the game with their access rules: players see their own rounds and results only."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Avg, Count, Exists, OuterRef, Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils.crypto import constant_time_compare

from accounts.models import Role, User
from annotations.selectors import datasets_for_researcher
from crowdseg.errors import Forbidden, NotFound

from . import scoring
from .models import (
    Assignment,
    Campaign,
    CampaignMember,
    CheckReport,
    LeaderboardEntry,
    PlayerStats,
    Round,
    RoundTask,
    Submission,
)

LEADERBOARD_TOP = 20


def campaigns_for_player(*, user: User) -> QuerySet[Campaign]:
    """Campaigns ``user`` can see: public ones, those they joined, and those on datasets they research.
    Pupils see only the campaigns assigned to their classes (and those they joined)."""
    joined = CampaignMember.objects.filter(campaign=OuterRef("pk"), player=user)
    if user.role == Role.PUPIL:
        assigned = Assignment.objects.filter(campaign=OuterRef("pk"), classroom__members__pupil=user)
        visible = Q(Exists(assigned)) | Q(Exists(joined))
    else:
        visible = Q(visibility=Campaign.Visibility.PUBLIC) | Q(Exists(joined))
    if user.is_researcher:
        visible |= Q(dataset__in=datasets_for_researcher(user=user).values("pk"))
    return (
        Campaign.objects.filter(visible)
        .annotate(joined=Exists(joined), player_count=Count("members", distinct=True))
        .select_related("dataset")
        .prefetch_related("label_classes")
        .order_by("-created_at")
    )


def campaign_get_for_player(*, user: User, campaign_id: int) -> Campaign:
    """A campaign ``user`` can see (``campaigns_for_player``), or NotFound. An invite-only
    campaign is not found by its id alone, so ids cannot be walked for names and leaderboards;
    a player who was sent its link joins with the code (``campaign_get_for_joining``)."""
    campaign = campaigns_for_player(user=user).filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


def campaign_get_for_joining(*, user: User, campaign_id: int, invite_code: str) -> Campaign:
    """A campaign ``user`` can see, or the invite-only campaign whose code they give; NotFound
    otherwise, the same answer as for a campaign that does not exist."""
    campaign = campaigns_for_player(user=user).filter(pk=campaign_id).first()
    if campaign is not None:
        return campaign
    invited = Campaign.objects.filter(pk=campaign_id, visibility=Campaign.Visibility.INVITE).first()
    if invited is None or not invite_code or not constant_time_compare(invite_code, invited.invite_code):
        raise NotFound(f"campaign {campaign_id} not found")
    invited.joined, invited.player_count = False, invited.members.count()
    return invited


def campaign_get_for_member(*, user: User, campaign_id: int) -> Campaign:
    """A campaign ``user`` joined (the cheap lookup the game loop makes on every round: one query)."""
    member = CampaignMember.objects.filter(campaign=OuterRef("pk"), player=user)
    campaign = Campaign.objects.filter(pk=campaign_id).annotate(is_member=Exists(member)).first()
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    if not campaign.is_member:
        raise Forbidden("join the campaign first", code="not_a_member")
    return campaign


def round_get_for_player(*, user: User, round_id) -> Round:
    game_round = Round.objects.filter(pk=round_id, player=user).first()
    if game_round is None:
        raise NotFound("no such round")
    return round_with_tasks(game_round=game_round)


def round_with_tasks(*, game_round: Round) -> Round:
    """``game_round`` with its tasks, their images, classes and submissions (one joined query)."""
    round_tasks = RoundTask.objects.filter(round=game_round).select_related(
        "task__image", "task__label_class", "submission"
    )
    prefetch_related_objects([game_round], Prefetch("round_tasks", queryset=round_tasks))
    return game_round


def round_check_accuracy(*, game_round: Round) -> float | None:
    """The player's accuracy on gold checks over the block of rounds ``game_round`` belongs to
    (``CheckReport``), once every round of the block is over; None before that or with too few
    checks. Never a figure of one round, nor of one task: that would tell which were checks."""
    if not game_round.settled:
        return None
    earlier = Round.objects.filter(player_id=game_round.player_id, campaign_id=game_round.campaign_id).filter(
        Q(created_at__lt=game_round.created_at) | Q(created_at=game_round.created_at, pk__lt=game_round.pk)
    )
    block = earlier.count() // scoring.CHECK_BLOCK_ROUNDS
    return (
        CheckReport.objects.filter(player_id=game_round.player_id, campaign_id=game_round.campaign_id, block=block)
        .values_list("accuracy", flat=True)
        .first()
    )


def player_stats(*, user: User) -> PlayerStats:
    return PlayerStats.objects.filter(player=user).first() or PlayerStats(player=user)


@dataclass(frozen=True)
class Standing:
    rank: int
    pseudonym: str
    points: int
    is_me: bool = False


def leaderboard_top(*, board: str, limit: int = LEADERBOARD_TOP, user: User | None = None) -> list[Standing]:
    """The top ``limit`` of ``board``, ranked 1, 2, 2, 4... (equal points share a rank)."""
    rows = list(
        LeaderboardEntry.objects.filter(board=board)
        .order_by("-points", "player_id")
        .values("points", "player_id", "player__pseudonym")[:limit]
    )
    standings, rank = [], 0
    for i, row in enumerate(rows):
        if i == 0 or row["points"] != rows[i - 1]["points"]:
            rank = i + 1
        is_me = user is not None and row["player_id"] == user.pk
        standings.append(Standing(rank, row["player__pseudonym"], row["points"], is_me))
    return standings


def leaderboard_standing(*, board: str, user: User) -> Standing | None:
    """The player's own rank: 1 + players with more points, counted on the index."""
    points = LeaderboardEntry.objects.filter(board=board, player=user).values_list("points", flat=True).first()
    if points is None:
        return None
    ahead = LeaderboardEntry.objects.filter(board=board, points__gt=points).count()
    return Standing(ahead + 1, user.pseudonym, points, True)


def anchoring_effect(*, campaign: Campaign) -> dict:
    """How the AI suggestion moves players, measured on gold checks whose rounds are over: mean Dice
    against the gold with the suggestion available and with it withheld
    (``Campaign.suggestion_withheld_share``), and how often players accepted it unchanged."""
    settled = Submission.objects.filter(
        round_task__round__campaign=campaign, round_task__is_gold=True, gold_dice__isnull=False
    )

    def summary(rows):
        values = rows.aggregate(mean=Avg("gold_dice"), n=Count("id"))
        return (None if values["mean"] is None else round(values["mean"], 4)), values["n"]

    with_mean, with_n = summary(settled.filter(round_task__suggestion_withheld=False))
    without_mean, without_n = summary(settled.filter(round_task__suggestion_withheld=True))
    offered = settled.filter(round_task__suggestion_withheld=False)
    accepted = offered.filter(annotation__suggestion_use="accepted").count()
    return {
        "with_mean": with_mean,
        "with_n": with_n,
        "without_mean": without_mean,
        "without_n": without_n,
        "accepted_unchanged_share": round(accepted / with_n, 4) if with_n else None,
    }
