"""Celery tasks: thin wrappers over the game's services."""

from celery import shared_task

from . import classroom_services, services
from .models import Campaign, Round


@shared_task(ignore_result=True)
def label_class_refresh(label_class_id: int) -> int:
    """After submissions (coalesced per label class): fused labels first, as task choice and
    scoring read them, then the submissions they settle."""
    return services.label_class_refresh(label_class_id=label_class_id)


@shared_task(ignore_result=True)
def campaign_fuse(campaign_id: int) -> int:
    """The admin's *Fuse now*: every label class of the campaign from scratch, then settlement."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    return services.campaign_fuse(campaign=campaign) if campaign else 0


@shared_task(ignore_result=True)
def round_settle(round_id: str) -> None:
    game_round = Round.objects.filter(pk=round_id).select_related("campaign").first()
    if game_round is not None:
        services.round_settle(game_round=game_round)


@shared_task(ignore_result=True)
def rounds_settle_expired() -> int:
    """Periodic (celery beat, every minute): settle rounds whose time ran out."""
    return services.rounds_settle_expired()


@shared_task(ignore_result=True)
def classrooms_enforce_retention() -> int:
    """Periodic (celery beat, hourly): end class memberships past their class's retention period
    and erase pupils left in no class."""
    return classroom_services.memberships_expire()


@shared_task(ignore_result=True)
def live_round_close(live_round_id: int) -> bool:
    """A live round's time is up: close it unless the teacher paused, skipped or closed it."""
    from . import live_sessions

    return live_sessions.live_round_close_due(live_round_id=live_round_id)


@shared_task(ignore_result=True)
def live_round_settle(live_round_id: int) -> int:
    """A live round closed: settle its pupils' one-task rounds, as any finished round settles."""
    rounds = list(
        Round.objects.filter(live_answer__live_round_id=live_round_id, settled=False).select_related(
            "campaign", "player"
        )
    )
    services.rounds_settle(rounds=rounds)
    return len(rounds)
