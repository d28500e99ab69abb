"""The crowd's consensus in the product: run the fusion engine over a label class's annotations,
store fused labels and annotator reliabilities, flag labels for review, accept reviews as gold.

The numbers come from ``annotations.fusion`` (pure numpy); this module only moves data between
the database and the engine. Two ways in:

- ``fusion_run``: every annotated task of a label class, jointly (``manage.py fuse``, the admin
  action): re-estimates every annotator's reliability and every fused label;
- ``fusion_refresh``: after submissions, the labels of the tasks that gained annotations (and
  everyone's estimates) are brought up to date from the last result this process holds
  (``annotations.fusion.update``); a process without one runs the full fusion first. The game
  coalesces submissions per label class, so a burst costs one update, not one per submission.

Both are safe to run twice and give the same answer (to within the engine's tolerance).

A ``FusedLabel`` is the crowd's label of its task, computed the same way for every task: on a task
with a gold standard it is the votes' own label (``fusion.ImageResult.crowd``), never the gold,
with its own confidence, gain and settledness. Gold standards weigh in only through the
annotators' reliabilities. Players are shown and scored against fused labels (initial masks,
settlement), so nothing they get is computed from a gold mask and no label tells a gold task from
another; the gold itself stays in ``GoldStandard``.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
from django.db import transaction
from django.db.models import Count, F, Q

from accounts.models import User
from inference.engine import rle

from . import figures, fusion
from .models import (
    Annotation,
    AnnotatorReliability,
    FusedLabel,
    GoldStandard,
    Image,
    LabelClass,
    SuggestionUse,
    Task,
)
from .services import image_grey

logger = logging.getLogger(__name__)

REVIEW_BELOW_CONFIDENCE = 0.85  # fused labels less certain than this go to a researcher
SETTLE_CONFIDENCE = 0.9  # sampling.is_settled: stop handing out a task this confident ...
MIN_VOTES, MAX_VOTES = 3, 7  # ... after at least this many votes, and always after this many

_latest: dict[int, fusion.FusionResult] = {}  # label class id -> this process's last result
_lock = threading.Lock()


def fusion_images(
    label_class: LabelClass, *, tasks: Iterable[Task] | None = None, without_golds: Iterable = ()
) -> list[fusion.FusionImage]:
    """The engine's input for ``label_class``: one image per annotated task (keyed by task id).

    Votes of annotators who accepted the AI suggestion unchanged are marked anchored, those who
    edited it edited (the engine folds light edits into the model's vote). Gold
    standards anchor the estimates, except those of tasks in ``without_golds`` (held out, e.g. for
    validating the dataset). A task's first ``fusion.MAX_VOTERS`` independent voters (anchored
    votes count as one, the model's) make its label: a whole class drawing one image in a live
    session gives it more annotations than the engine fuses; the later ones stay stored.
    Each image's intensities are its model input's grey levels (the mean of its three channels),
    read once per image.
    """
    annotations = Annotation.objects.filter(task__label_class=label_class).select_related("task__image")
    if tasks is not None:
        annotations = annotations.filter(task__in=list(tasks))
    votes: dict[str, list[fusion.Vote]] = defaultdict(list)
    shapes: dict[str, tuple[int, int]] = {}
    images: dict[str, Image] = {}
    voters: dict[str, set] = defaultdict(set)
    for annotation in annotations.order_by("task_id", "created_at", "pk"):
        key = str(annotation.task_id)
        anchored = annotation.suggestion_use == SuggestionUse.ACCEPTED
        voter = fusion.MODEL if anchored else annotation.annotator_id
        if voter not in voters[key] and len(voters[key]) >= fusion.MAX_VOTERS:
            continue
        voters[key].add(voter)
        shapes[key] = (annotation.task.image.height, annotation.task.image.width)
        images[key] = annotation.task.image
        votes[key].append(
            fusion.Vote(
                annotator=str(annotation.annotator_id),
                mask=rle.decode(annotation.mask),
                anchored=anchored,
                edited=annotation.suggestion_use == SuggestionUse.EDITED,
            )
        )
    held_out = {str(t) for t in without_golds}
    golds = {
        str(g.task_id): rle.decode(g.mask)
        for g in GoldStandard.objects.filter(task_id__in=list(votes)).exclude(task_id__in=list(held_out))
    }
    return [
        fusion.FusionImage(
            key, shapes[key], votes=votes[key], gold=golds.get(key), intensity=_intensity(images[key], shapes[key])
        )
        for key in votes
    ]


def _intensity(image: Image, shape: tuple[int, int]) -> np.ndarray | None:
    """``image``'s grey levels (``services.image_grey``); None (the votes alone) when its model
    input is missing or is not the image's size, which the fusion must survive."""
    try:
        grey = image_grey(image)
    except (OSError, ValueError):
        logger.warning("image %s: model input unreadable; fusing its votes without its intensities", image.pk)
        return None
    if grey.shape != shape:
        logger.warning(
            "image %s: model input is %s, not %s; fusing without its intensities", image.pk, grey.shape, shape
        )
        return None
    return grey


def fusion_run(
    *, label_class: LabelClass, progress: Callable[[str], None] | None = None, without_golds: Iterable = ()
) -> fusion.FusionResult | None:
    """Fuse every annotated task of ``label_class`` jointly and store the results. None when nothing
    is annotated yet."""
    say = progress or (lambda _: None)
    say("reading annotations")
    images = fusion_images(label_class, without_golds=without_golds)
    if not images:
        return None
    say(f"fusing {len(images)} images")
    result = fusion.fuse(images)
    say("storing fused labels and reliabilities")
    _store(label_class, result, result.images, _counts(images))
    with _lock:
        _latest[label_class.pk] = result
    return result


def tasks_needing_fusion(label_class: LabelClass):
    """Annotated tasks whose fused label is missing or predates their latest annotations."""
    return (
        Task.objects.filter(label_class=label_class)
        .annotate(annotated=Count("annotations"))
        .filter(annotated__gt=0)
        .filter(Q(fused__isnull=True) | ~Q(fused__annotation_count=F("annotated")))
    )


def fusion_refresh(*, label_class: LabelClass, tasks: Iterable[Task] | None = None) -> list[Task]:
    """Bring the fused labels of ``tasks`` (default: every task needing it) and the class's
    reliabilities up to date. Returns the tasks refreshed."""
    tasks = list(tasks_needing_fusion(label_class) if tasks is None else tasks)
    if not tasks:
        return []
    with _lock:
        previous = _latest.get(label_class.pk)
    if previous is None:
        fusion_run(label_class=label_class)
        return tasks
    images = fusion_images(label_class, tasks=tasks)
    if images:
        result = fusion.update(previous, images)
        _store(label_class, result, {i.key: result.images[i.key] for i in images}, _counts(images))
        with _lock:
            _latest[label_class.pk] = result
    return tasks


def _counts(images: list[fusion.FusionImage]) -> dict[str, int]:
    """Each image's annotations, fused or not (a task past ``fusion.MAX_VOTERS`` voters is up to
    date once its label has seen them all)."""
    counts = (
        Annotation.objects.filter(task_id__in=[image.key for image in images])
        .values("task_id")
        .annotate(n=Count("pk"))
        .values_list("task_id", "n")
    )
    return {str(task_id): n for task_id, n in counts}


RELIABILITY_FIELDS = [
    "sensitivity", "precision", "specificity", "sensitivity_sd", "precision_sd", "specificity_sd",
    "images", "golds", "anchored", "weight",
]  # fmt: skip
LABEL_FIELDS = [
    "mask",
    "area",
    "probability",
    "confidence",
    "votes",
    "gain",
    "settled",
    "annotation_count",
    "updated_at",
]


def _store(
    label_class: LabelClass,
    result: fusion.FusionResult,
    images: dict[str, fusion.ImageResult],
    annotation_counts: dict[str, int],
) -> None:
    """Upsert the fused labels of ``images`` and every annotator's estimate, a few queries in all
    (a refresh runs every couple of seconds under load)."""
    decided = set(
        str(task_id)  # image keys are task ids as strings
        for task_id in FusedLabel.objects.filter(
            task_id__in=list(images), review__in=[FusedLabel.Review.ACCEPTED, FusedLabel.Review.CORRECTED]
        ).values_list("task_id", flat=True)
    )
    labels = {True: [], False: []}  # keyed by "a researcher decided": their review stands
    for key, fused in images.items():
        image = fused.crowd or fused  # on gold images, what the votes say: never the gold itself
        review_needed = not fused.gold and image.confidence < REVIEW_BELOW_CONFIDENCE
        settled = fusion.is_settled(image, image.votes, SETTLE_CONFIDENCE, MIN_VOTES, MAX_VOTES)
        fields = _label_fields(image, image.mask, settled, review_needed)
        label = FusedLabel(task_id=key, annotation_count=annotation_counts[key], **fields)
        labels[key in decided].append(label)
    # Annotators deleted since this process cached its result have no row to update.
    people = {int(who) for who in result.annotators if who != fusion.MODEL}
    known = set(User.objects.filter(pk__in=people).values_list("pk", flat=True))
    estimates = [
        AnnotatorReliability(
            annotator_id=int(who),
            label_class=label_class,
            **{f: getattr(estimate, f) for f in RELIABILITY_FIELDS},
        )
        for who, estimate in result.annotators.items()
        if who != fusion.MODEL and int(who) in known
    ]
    with transaction.atomic():
        for is_decided, rows in labels.items():
            FusedLabel.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["task"],
                update_fields=LABEL_FIELDS if is_decided else [*LABEL_FIELDS, "review"],
            )
        AnnotatorReliability.objects.bulk_create(
            estimates,
            update_conflicts=True,
            unique_fields=["annotator", "label_class"],
            update_fields=[*RELIABILITY_FIELDS, "updated_at"],
        )
        model = result.annotators.get(fusion.MODEL)
        if model is not None:  # null annotator: no unique conflict to upsert on
            AnnotatorReliability.objects.update_or_create(
                annotator=None,
                label_class=label_class,
                defaults={f: getattr(model, f) for f in RELIABILITY_FIELDS},
            )


def _label_fields(image: fusion.ImageResult, mask: np.ndarray, settled: bool, review_needed: bool) -> dict:
    return {
        "mask": rle.encode(mask),
        "area": int(mask.sum()),
        "probability": figures.grey_png(image.probability),
        "confidence": image.confidence,
        "votes": image.votes,
        "gain": fusion.annotation_gain(image, image.votes),
        "settled": settled,
        "review": FusedLabel.Review.NEEDED if review_needed else FusedLabel.Review.NONE,
    }


def fused_label_accept(*, fused: FusedLabel, reviewer: User, mask: np.ndarray | None = None) -> GoldStandard:
    """A researcher's review: the fused mask (or their correction, ``mask``) becomes the task's gold."""
    from .services import gold_standard_set

    chosen = rle.decode(fused.mask) if mask is None else mask
    with transaction.atomic():
        gold = gold_standard_set(task=fused.task, mask=chosen, created_by=reviewer, source=GoldStandard.Source.REVIEW)
        fused.review = FusedLabel.Review.ACCEPTED if mask is None else FusedLabel.Review.CORRECTED
        fused.save(update_fields=["review"])
    return gold


def forget_cached_results() -> None:
    """Drop this process's cached fusion results (tests; after bulk edits of annotations)."""
    with _lock:
        _latest.clear()
