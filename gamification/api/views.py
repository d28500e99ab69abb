"""Game endpoints: thin adapters over ``gamification.services`` and ``selectors``."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from accounts.models import Role
from annotations.selectors import dataset_get_for_researcher, dataset_is_researched_by
from crowdseg.errors import DomainError, Forbidden
from gamification import badges, progression, selectors, services
from gamification.models import EarnedBadge
from gamification.services import IDEMPOTENCY_KEY

from .serializers import (
    BatchItemSerializer,
    BatchSerializer,
    CampaignCreateSerializer,
    CampaignOwnerSerializer,
    CampaignSerializer,
    JoinSerializer,
    SubmissionSerializer,
    round_data,
)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=True, pattern=IDEMPOTENCY_KEY.pattern
)


class RoundThrottle(UserRateThrottle):
    scope = "rounds"


class SubmitThrottle(UserRateThrottle):
    scope = "submit"


def _campaign_data(campaign, user) -> dict:
    """The researchers of the campaign's dataset also see its rules and invite code."""
    researcher = dataset_is_researched_by(dataset=campaign.dataset, user=user)
    return (CampaignOwnerSerializer if researcher else CampaignSerializer)(campaign).data


class CampaignListView(generics.ListAPIView):
    serializer_class = CampaignSerializer

    def get_queryset(self):
        return selectors.campaigns_for_player(user=self.request.user)

    @extend_schema(request=CampaignCreateSerializer, responses={201: CampaignOwnerSerializer})
    def post(self, request):
        if not request.user.is_researcher:
            raise Forbidden("only researchers create campaigns")
        params = CampaignCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        dataset = dataset_get_for_researcher(user=request.user, dataset_id=data.pop("dataset"))
        campaign = services.campaign_create(owner=request.user, dataset=dataset, **data)
        return Response(CampaignOwnerSerializer(campaign).data, status=201)


class CampaignDetailView(APIView):
    @extend_schema(responses={200: CampaignSerializer})
    def get(self, request, campaign_id: int):
        campaign = selectors.campaign_get_for_player(user=request.user, campaign_id=campaign_id)
        return Response(_campaign_data(campaign, request.user))


class CampaignJoinView(APIView):
    @extend_schema(request=JoinSerializer, responses={200: CampaignSerializer})
    def post(self, request, campaign_id: int):
        params = JoinSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        campaign = selectors.campaign_get_for_joining(
            user=request.user, campaign_id=campaign_id, invite_code=params.validated_data["invite_code"]
        )
        services.campaign_join(player=request.user, campaign=campaign, **params.validated_data)
        campaign.joined, campaign.player_count = True, campaign.members.count()  # what the join changed
        return Response(_campaign_data(campaign, request.user))


class RoundCreateView(APIView):
    """The next round: tasks on images you have not done, hidden quality checks mixed in."""

    throttle_classes = [RoundThrottle]

    @extend_schema(request=None, responses={201: dict})
    def post(self, request, campaign_id: int):
        campaign = selectors.campaign_get_for_member(user=request.user, campaign_id=campaign_id)
        game_round = services.round_start(player=request.user, campaign=campaign)
        game_round = selectors.round_with_tasks(game_round=game_round)
        return Response(round_data(game_round, request, None), status=201)


class RoundDetailView(APIView):
    """A round of yours, with its progress; ``check_accuracy`` once it is over and settled."""

    @extend_schema(responses={200: dict})
    def get(self, request, round_id):
        game_round = selectors.round_get_for_player(user=request.user, round_id=round_id)
        if not game_round.settled and services.round_is_over(game_round, timezone.now()):
            services.round_settle(game_round=game_round)
            game_round = selectors.round_get_for_player(user=request.user, round_id=round_id)
        accuracy = selectors.round_check_accuracy(game_round=game_round)
        return Response(round_data(game_round, request, accuracy))


class SubmitView(APIView):
    """Submit your mask for one task of your round. Requires an ``Idempotency-Key`` header:
    retries with the same key and body get the first answer again (``Idempotent-Replayed: true``)."""

    throttle_classes = [SubmitThrottle]

    @extend_schema(
        request=SubmissionSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: dict},
    )
    def post(self, request, round_id, task_id):
        params = SubmissionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        outcome = services.submission_submit(
            player=request.user,
            round_id=round_id,
            task_id=task_id,
            data=dict(params.validated_data),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        return _outcome_response(outcome)


def _outcome_response(outcome) -> Response:
    response = Response(outcome.body, status=outcome.status)
    if outcome.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class SubmissionBatchView(APIView):
    """Submissions an offline client kept, up to 100 at once, each with its own ``idempotency_key``.

    Answers 200 with one result per item, in order: ``{"status": 201, "body": ...}`` as the single
    submit would answer, or ``{"status": 4xx, "error": ...}``. Items are independent: one bad item
    does not stop the others, and re-sending the batch is safe.
    """

    throttle_classes = [SubmitThrottle]

    @extend_schema(request=BatchSerializer, responses={200: dict})
    def post(self, request):
        params = BatchSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        results = []
        for item in params.validated_data["submissions"]:
            results.append(_batch_item(request.user, item))
        return Response({"results": results})


def _batch_item(user, item: dict) -> dict:
    params = BatchItemSerializer(data=item)
    if not params.is_valid():
        return {
            "status": 400,
            "error": {"status": 400, "code": "invalid", "message": "invalid item", "fields": params.errors},
        }
    data = dict(params.validated_data)
    round_id, task_id, key = data.pop("round"), data.pop("task"), data.pop("idempotency_key")
    try:
        outcome = services.submission_submit(
            player=user, round_id=round_id, task_id=task_id, data=data, idempotency_key=key
        )
    except DomainError as exc:
        return {"status": exc.status, "error": {"status": exc.status, "code": exc.code, "message": exc.message}}
    return {"status": outcome.status, "replayed": outcome.replayed, "body": outcome.body}


class MyGameView(APIView):
    """Your progression: XP, level, streaks, badges and counts. Pupils get no streaks and no
    streak badges: nothing that presses a child to come back every day."""

    @extend_schema(responses={200: dict})
    def get(self, request):
        stats = selectors.player_stats(user=request.user)
        earned = {b.code: b.earned_at for b in EarnedBadge.objects.filter(player=request.user)}
        pupil = request.user.role == Role.PUPIL
        body = {
            "pseudonym": request.user.pseudonym,
            "xp": stats.xp,
            "level": stats.level,
            "xp_for_next_level": progression.xp_for_level(stats.level + 1),
            "streak": stats.streak,
            "best_streak": stats.best_streak,
            "rounds_completed": stats.rounds_completed,
            "tasks_submitted": stats.tasks_submitted,
            "badges": [
                {"code": b.code, "name": b.name, "description": b.description, "earned_at": earned.get(b.code)}
                for b in badges.BADGES
                if not (pupil and b.code in badges.STREAK_BADGES)
            ],
        }
        if pupil:
            del body["streak"], body["best_streak"]
        return Response(body)


class LeaderboardView(APIView):
    """Top players and your own standing. ``?period=all`` (default) or ``week`` (ISO week, UTC)."""

    @extend_schema(
        parameters=[OpenApiParameter("period", str, enum=["all", "week"])],
        responses={200: dict},
    )
    def get(self, request, campaign_id: int | None = None):
        period = request.query_params.get("period", "all")
        if period not in ("all", "week"):
            raise DomainError("period must be 'all' or 'week'", fields={"period": ["all or week"]})
        suffix = "all" if period == "all" else progression.week_key(timezone.now())
        if campaign_id is None:
            board = f"global:{suffix}"
        else:
            campaign = selectors.campaign_get_for_player(user=request.user, campaign_id=campaign_id)
            board = f"campaign:{campaign.pk}:{suffix}"
        top = selectors.leaderboard_top(board=board, user=request.user)
        me = selectors.leaderboard_standing(board=board, user=request.user)
        return Response(
            {
                "board": board,
                "top": [{"rank": s.rank, "pseudonym": s.pseudonym, "points": s.points, "is_me": s.is_me} for s in top],
                "me": None if me is None else {"rank": me.rank, "pseudonym": me.pseudonym, "points": me.points},
            }
        )
