"""Reads with access rules: a researcher sees their own datasets, staff see all."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from accounts.models import User
from crowdseg.errors import NotFound

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


def task_get_for_player(*, user: User, task_id) -> Task:
    """A task ``user`` may work on (ask suggestions for, annotate), or NotFound.

    Today: tasks of datasets the user researches. Volunteers and pupils reach tasks through the
    campaigns they joined, which arrive with the game loop; this is the one place to extend.
    """
    return task_get_for_researcher(user=user, task_id=task_id)
