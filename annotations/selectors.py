"""Reads with access rules. Access to research data follows the dataset: its owner and its
collaborators research it, superusers (the service's root accounts) see everything, and nobody
else sees any of it: neither other researchers nor staff, whose role is to run the service."""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from accounts.models import User
from crowdseg.errors import Forbidden, NotFound

from .models import Dataset, Image, Task


def datasets_for_researcher(*, user: User) -> QuerySet[Dataset]:
    """The datasets ``user`` researches: owns or collaborates on (all of them for a superuser)."""
    datasets = Dataset.objects.annotate(image_count=Count("images", distinct=True)).order_by("name")
    if user.is_superuser:
        return datasets
    if not (user.is_authenticated and user.is_researcher):
        return datasets.none()
    return datasets.filter(Q(owner=user) | Q(Exists(_collaboration(user))))


def _collaboration(user: User) -> QuerySet:
    # A subquery rather than a join: a join would repeat each dataset once per collaborator.
    return Dataset.collaborators.through.objects.filter(dataset=OuterRef("pk"), user=user)


def dataset_is_researched_by(*, dataset: Dataset, user: User) -> bool:
    """Does ``user`` research ``dataset`` (owner, collaborator, or superuser)?"""
    if user.is_superuser or (user.is_authenticated and user.is_researcher and dataset.owner_id == user.pk):
        return True
    return user.is_authenticated and user.is_researcher and dataset.collaborators.filter(pk=user.pk).exists()


def dataset_get_for_researcher(*, user: User, dataset_id: int) -> Dataset:
    """The dataset, or NotFound — also for datasets that exist but belong to someone else."""
    dataset = datasets_for_researcher(user=user).filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def images_of_dataset(*, dataset: Dataset) -> QuerySet[Image]:
    return dataset.images.prefetch_related("tasks__label_class").order_by("source_name", "slice_index", "frame_key")


def task_get_for_researcher(*, user: User, task_id) -> Task:
    task = (
        Task.objects.select_related("image", "label_class__dataset")
        .filter(pk=task_id, label_class__dataset__in=datasets_for_researcher(user=user))
        .first()
    )
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def task_get_for_suggestions(*, user: User, task_id) -> Task:
    """A task ``user`` may ask suggestions for (and see the initial mask and embedding of), or
    NotFound; Forbidden where the player's round shows it without the AI's help (the game
    withholds it on a share of tasks to measure how much it anchors players).

    Players reach a task through one of their game rounds; researchers reach their datasets'
    tasks.  One query for a player (two for a researcher): suggestions come as a finger drags.
    """
    mine = {"pk": OuterRef("pk"), "round_tasks__round__player": user}
    task = (
        Task.objects.select_related("image", "label_class__dataset")
        .filter(pk=task_id)
        .annotate(
            played=Exists(Task.objects.filter(**mine)),
            # One filter() call: the same round task must be the player's and withheld.
            withheld=Exists(Task.objects.filter(**mine, round_tasks__suggestion_withheld=True)),
        )
        .first()
    )
    if task is None:
        raise NotFound(f"task {task_id} not found")
    if task.withheld:
        raise Forbidden("this task is played without the AI's suggestion", code="suggestion_withheld")
    if task.played or datasets_for_researcher(user=user).filter(pk=task.label_class.dataset_id).exists():
        return task
    raise NotFound(f"task {task_id} not found")
