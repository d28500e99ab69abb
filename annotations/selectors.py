"""Reads with access rules. Access to research data follows the dataset: its owner and its
collaborators research it, superusers (the service's root accounts) see everything, and nobody
else sees any of it: neither other researchers nor staff, whose role is to run the service."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet

from accounts.models import User
from crowdseg.errors import Forbidden, NotFound

from .models import Annotation, Dataset, FusedLabel, GoldStandard, Image, Task


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


# -- exports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSelection:
    """Which images and labels of a dataset an export holds.

    ``label_classes``: the classes, in label order. A fused label is exported when its confidence
    is at least ``min_confidence`` (None: any) and its review status is one of ``review`` (None:
    any), e.g. ``review=("accepted", "corrected")`` for reviewed labels only.
    An image is in the selection when one of its tasks of these classes has what the export
    carries: a fused label that passes (``fused``), a gold standard (``gold``), annotations
    (``raters``).
    """

    dataset_id: int
    label_classes: tuple[int, ...]
    min_confidence: float | None = None
    review: tuple[str, ...] | None = None
    fused: bool = True
    gold: bool = False
    raters: bool = False

    def fused_filter(self, prefix: str = "") -> Q:
        q = Q(**{f"{prefix}task__label_class_id__in": self.label_classes})
        if self.min_confidence is not None:
            q &= Q(**{f"{prefix}confidence__gte": self.min_confidence})
        if self.review is not None:
            q &= Q(**{f"{prefix}review__in": self.review})
        return q


def export_images(selection: ExportSelection) -> QuerySet[Image]:
    """The selection's images, in a stable order (source, slice, frame)."""
    tasks = Task.objects.filter(image=OuterRef("pk"), label_class_id__in=selection.label_classes)
    wanted = Q(pk__in=[])
    if selection.fused:
        fused = FusedLabel.objects.filter(selection.fused_filter(), task__image=OuterRef("pk"))
        wanted |= Q(Exists(fused))
    if selection.gold:
        wanted |= Q(Exists(tasks.filter(gold__isnull=False)))
    if selection.raters:
        wanted |= Q(Exists(tasks.filter(annotations__isnull=False)))
    return (
        Image.objects.filter(dataset_id=selection.dataset_id)
        .filter(wanted)
        .order_by("source_name", "source_sha256", "slice_index", "frame_key", "pk")
    )


@dataclass
class ExportRecord:
    """One selected image with its labels as stored (RLE, PNG bytes), per label class id."""

    image: Image
    fused: dict[int, FusedLabel]
    golds: dict[int, GoldStandard]
    annotations: dict[int, list[Annotation]]


def export_records(selection: ExportSelection, *, chunk: int = 200) -> Iterator[ExportRecord]:
    """The selection's images with their labels, ``chunk`` images (and four queries) at a time:
    memory holds one chunk, however large the dataset."""
    ids = export_images(selection).values_list("pk", flat=True)
    batch: list = []
    for image_id in ids.iterator(chunk_size=2000):
        batch.append(image_id)
        if len(batch) == chunk:
            yield from _records(selection, batch)
            batch = []
    if batch:
        yield from _records(selection, batch)


def _records(selection: ExportSelection, image_ids: list) -> Iterator[ExportRecord]:
    images = Image.objects.in_bulk(image_ids)
    classes = selection.label_classes
    fused: dict = defaultdict(dict)
    golds: dict = defaultdict(dict)
    annotations: dict = defaultdict(lambda: defaultdict(list))
    if selection.fused:
        rows = FusedLabel.objects.filter(selection.fused_filter(), task__image_id__in=image_ids)
        for row in rows.annotate(image_id=F("task__image_id"), label_class_id=F("task__label_class_id")):
            fused[row.image_id][row.label_class_id] = row
    if selection.gold:
        rows = GoldStandard.objects.filter(task__image_id__in=image_ids, task__label_class_id__in=classes)
        for row in rows.annotate(image_id=F("task__image_id"), label_class_id=F("task__label_class_id")):
            golds[row.image_id][row.label_class_id] = row
    if selection.raters:
        rows = Annotation.objects.filter(task__image_id__in=image_ids, task__label_class_id__in=classes)
        rows = rows.annotate(image_id=F("task__image_id"), label_class_id=F("task__label_class_id"))
        for row in rows.order_by("created_at", "pk"):
            annotations[row.image_id][row.label_class_id].append(row)
    for image_id in image_ids:
        yield ExportRecord(images[image_id], fused[image_id], golds[image_id], annotations[image_id])


def export_rater_counts(selection: ExportSelection) -> list[int]:
    """Distinct raters per selected task that has any annotation (for the data card)."""
    return list(
        Task.objects.filter(
            image__in=export_images(selection), label_class_id__in=selection.label_classes, annotations__isnull=False
        )
        .annotate(raters=Count("annotations__annotator", distinct=True))
        .values_list("raters", flat=True)
    )
