"""Celery tasks: thin wrappers over the game's services."""

from celery import shared_task

from annotations import consensus
from annotations.models import Task

from . import services
from .models import Round


@shared_task(ignore_result=True)
def task_settle(task_id: str) -> int:
    """After a submission: the task's fused label first (task choice and scoring read it), then
    the submissions it settles."""
    task = Task.objects.filter(pk=task_id).select_related("label_class").first()
    if task is None:
        return 0
    consensus.fusion_refresh(task=task)
    return services.task_settle(task=task)


@shared_task(ignore_result=True)
def round_settle(round_id: str) -> None:
    game_round = Round.objects.filter(pk=round_id).select_related("campaign").first()
    if game_round is not None:
        services.round_settle(game_round=game_round)


@shared_task(ignore_result=True)
def rounds_settle_expired() -> int:
    """Periodic (celery beat, every minute): settle rounds whose time ran out."""
    return services.rounds_settle_expired()
