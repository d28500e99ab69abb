"""Reads with access rules: a researcher sees their own datasets, staff see all."""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, QuerySet

from accounts.models import User
from crowdseg.errors import Forbidden, NotFound

from .models import Dataset, Image, Task


def datasets_for_researcher(*, user: User) -> QuerySet[Dataset]:
    datasets = Dataset.objects.annotate(image_count=Count("images", distinct=True)).order_by("name")
    if user.is_staff or user.is_superuser:
        return datasets
    if not user.is_researcher:
        return datasets.none()
    return datasets.filter(owner=user)


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
