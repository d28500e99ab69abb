"""Synthesis and validation jobs: start, claim, run with progress, cancel, resume.

The numbers come from ``synthesis.engine`` (torch, no Django); this module gathers a dataset's
images and labels, keeps the held-out split honest, and records what the engine did.

**The held-out split.** An image with expert gold standards (imported or drawn by an expert, not
crowd labels accepted in review) is held out for testing when an HMAC of its id under the
dataset's secret falls in the lowest ``HELD_OUT_PERCENT``: stable per image, whatever else is
added later, and unguessable. Held-out images never reach pix2pix training, the fusion that the
validation trains on, or any training arm; the engine refuses overlapping train and test images.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from annotations import consensus, figures, fusion
from annotations.models import Dataset, GoldStandard, Image, LabelClass, Task
from annotations.services import image_grey
from crowdseg import events
from crowdseg.errors import Conflict, DomainError
from inference.engine import rle

from .models import Job, SyntheticSample

logger = logging.getLogger(__name__)

HELD_OUT_PERCENT = 30
STALE_AFTER = timedelta(minutes=5)  # a running job silent this long lost its worker
EXPERT_SOURCES = (GoldStandard.Source.IMPORT, GoldStandard.Source.EXPERT)
PARAMS = {
    Job.Kind.PIX2PIX: {"size": (32, 256, 64), "epochs": (1, 500, 30), "samples": (0, 5000, 0), "seed": (0, 2**31, 0)},
    Job.Kind.VALIDATION: {"size": (32, 256, 64), "steps": (10, 5000, 400), "seeds": (1, 10, 3)},
}


class JobCancelled(Exception):
    pass


# -- the split and the data ---------------------------------------------------------------------


def is_held_out(dataset: Dataset, image_id) -> bool:
    digest = hmac.new(dataset.uid_key.encode(), str(image_id).encode(), hashlib.sha256).hexdigest()
    return int(digest[:8], 16) % 100 < HELD_OUT_PERCENT


@dataclass
class Pairs:
    """Images (N, H, W) float32 in [0, 1] and masks (N, C, H, W) bool at ``size`` x ``size``, with
    the task ids each mask came from (one per class)."""

    images: np.ndarray
    masks: np.ndarray
    tasks: list[list[str]]

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def empty(cls, size: int, classes: int) -> Pairs:
        return cls(np.zeros((0, size, size), np.float32), np.zeros((0, classes, size, size), bool), [])

    def __add__(self, other: Pairs) -> Pairs:
        return Pairs(
            np.concatenate([self.images, other.images]),
            np.concatenate([self.masks, other.masks]),
            self.tasks + other.tasks,
        )


def dataset_classes(dataset: Dataset) -> list[LabelClass]:
    return list(dataset.label_classes.order_by("pk"))


def expert_images(dataset: Dataset) -> list[Image]:
    """Images with an expert gold standard for every label class."""
    classes = dataset_classes(dataset)
    images = Image.objects.filter(dataset=dataset)
    for label_class in classes:
        images = images.filter(
            tasks__label_class=label_class, tasks__gold__source__in=EXPERT_SOURCES
        )  # one join per class: every class must have its expert gold
    return list(images.distinct().order_by("pk"))


def gold_pairs(dataset: Dataset, images: list[Image], size: int) -> Pairs:
    """The images with their expert gold masks."""
    classes = dataset_classes(dataset)
    golds = {
        (g.task.image_id, g.task.label_class_id): g
        for g in GoldStandard.objects.filter(task__image__in=images).select_related("task")
    }
    rows = []
    for image in images:
        masks = [golds.get((image.pk, c.pk)) for c in classes]
        if all(masks):
            rows.append((image, [rle.decode(g.mask) for g in masks], [str(g.task_id) for g in masks]))
    return _pairs(rows, size, len(classes))


def fused_pairs(dataset: Dataset, images: list[Image], size: int) -> Pairs:
    """The crowd-annotated ones among ``images`` with their fused labels, fused here from their
    annotations only (so nothing outside ``images`` informs the weights)."""
    classes = dataset_classes(dataset)
    masks: dict[tuple, np.ndarray] = {}
    task_ids: dict[tuple, str] = {}
    for label_class in classes:
        tasks = list(Task.objects.filter(label_class=label_class, image__in=images))
        inputs = consensus.fusion_images(label_class, tasks=tasks)
        if not inputs:
            continue
        result = fusion.fuse(inputs)
        for task in tasks:
            if str(task.pk) in result.images:
                masks[(task.image_id, label_class.pk)] = result.images[str(task.pk)].mask
                task_ids[(task.image_id, label_class.pk)] = str(task.pk)
    rows = []
    for image in images:
        keys = [(image.pk, c.pk) for c in classes]
        if all(k in masks for k in keys):
            rows.append((image, [masks[k] for k in keys], [task_ids[k] for k in keys]))
    return _pairs(rows, size, len(classes))


def _pairs(rows, size: int, classes: int) -> Pairs:
    from synthesis.engine import to_square

    if not rows:
        return Pairs.empty(size, classes)
    images, masks = [], []
    for image, class_masks, _ in rows:
        grey = image_grey(image)
        img, msk = to_square(grey[None], np.stack(class_masks)[None], size)
        images.append(img[0])
        masks.append(msk[0])
    return Pairs(np.stack(images), np.stack(masks), [t for _, _, t in rows])


def split(dataset: Dataset) -> tuple[list[Image], list[Image], list[Image]]:
    """(expert images for training, expert images held out, other images) of ``dataset``."""
    experts = expert_images(dataset)
    held_out = [i for i in experts if is_held_out(dataset, i.pk)]
    expert_train = [i for i in experts if not is_held_out(dataset, i.pk)]
    expert_ids = {i.pk for i in experts}
    others = [i for i in Image.objects.filter(dataset=dataset).order_by("pk") if i.pk not in expert_ids]
    return expert_train, held_out, others


# -- job lifecycle ------------------------------------------------------------------------------


def job_start(
    *, dataset: Dataset, kind: str, created_by: User | None, params: dict | None = None, enqueue: bool = True
) -> Job:
    """Queue a job (on a Celery worker unless ``enqueue`` is False: then the caller runs it with
    ``job_run``); Conflict while another job runs on the dataset."""
    if kind not in Job.Kind.values:
        raise DomainError(f"unknown job kind {kind!r}", fields={"kind": [f"one of {', '.join(Job.Kind.values)}"]})
    clean = _params(kind, params or {})
    try:
        with transaction.atomic():
            job = Job.objects.create(dataset=dataset, kind=kind, params=clean, created_by=created_by)
    except IntegrityError:
        raise Conflict(f"a job is already queued or running on {dataset.name}", code="job_active") from None
    if enqueue:
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _params(kind: str, given: dict) -> dict:
    allowed = PARAMS[kind]
    unknown = set(given) - set(allowed)
    if unknown:
        raise DomainError(f"unknown parameters: {', '.join(sorted(unknown))}", fields={"params": sorted(unknown)})
    clean = {}
    for name, (low, high, default) in allowed.items():
        value = given.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise DomainError(f"{name} must be an integer in [{low}, {high}]", fields={name: ["out of range"]})
        clean[name] = value
    return clean


def _enqueue(job_id: int) -> None:
    from . import tasks

    tasks.job_run.delay(job_id)


def job_cancel(*, job: Job) -> Job:
    """Ask a running job to stop after its current epoch (or model); a queued one stops at once."""
    if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished_at=timezone.now()
    ):
        return Job.objects.get(pk=job.pk)
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True)
    return Job.objects.get(pk=job.pk)


def job_resume(*, job: Job, now: datetime | None = None) -> Job:
    """Queue again a job that failed, was cancelled, or whose worker died (no heartbeat for
    ``STALE_AFTER``): it continues from its last checkpoint."""
    now = now or timezone.now()
    stale = job.status == Job.Status.RUNNING and (job.heartbeat_at is None or job.heartbeat_at < now - STALE_AFTER)
    if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED) and not stale:
        raise Conflict(
            f"job {job.pk} is {job.status}; only failed, cancelled or stale jobs resume", code="job_not_resumable"
        )
    try:
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, cancel_requested=False, error="")
    except IntegrityError:
        raise Conflict(f"another job is active on {job.dataset.name}", code="job_active") from None
    transaction.on_commit(lambda: _enqueue(job.pk))
    return Job.objects.get(pk=job.pk)


def jobs_resume_stale(*, now: datetime | None = None) -> int:
    """Periodic: resume running jobs whose worker died."""
    now = now or timezone.now()
    stale = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER)
    count = 0
    for job in stale:
        job_resume(job=job, now=now)
        count += 1
    return count


def job_claim(*, job_id: int, now: datetime | None = None) -> Job | None:
    """Take the job for this worker: a queued one, or a running one whose worker died."""
    now = now or timezone.now()
    claimable = Q(status=Job.Status.QUEUED) | Q(status=Job.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER)
    if not Job.objects.filter(claimable, pk=job_id).update(
        status=Job.Status.RUNNING, heartbeat_at=now, attempts=F("attempts") + 1
    ):
        return None
    Job.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    return Job.objects.select_related("dataset", "created_by").get(pk=job_id)


def job_run(*, job_id: int, on_progress: Callable[[dict], None] | None = None) -> Job | None:
    """Run a job to its end (Celery task body). Safe to deliver twice: only one worker claims it.
    ``on_progress`` also gets every progress record (a command's progress bar)."""
    job = job_claim(job_id=job_id)
    if job is None:
        return None
    job.on_progress = on_progress
    try:
        if job.kind == Job.Kind.PIX2PIX:
            _run_pix2pix(job)
        else:
            _run_validation(job)
    except JobCancelled:
        _finish(job, Job.Status.CANCELLED)
    except DomainError as exc:
        _finish(job, Job.Status.FAILED, error=exc.message)
    except Exception as exc:
        logger.exception("job %s failed", job.pk)
        _finish(job, Job.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _finish(job, Job.Status.DONE)
    return Job.objects.get(pk=job.pk)


def _finish(job: Job, status: str, error: str = "") -> None:
    Job.objects.filter(pk=job.pk).update(status=status, error=error, finished_at=timezone.now(), cancel_requested=False)
    _announce(job, {"status": status, "error": error})


def _announce(job: Job, payload: dict) -> None:
    if job.created_by_id:
        events.publish(job.created_by_id, "job.progress", {"job": job.pk, "kind": job.kind, **payload})


def _report(job: Job, stage: str, done: int, total: int, eta_seconds: float, entry: dict | None = None) -> None:
    """Record progress and a heartbeat, tell the researcher, and stop if they asked to cancel."""
    progress = {"stage": stage, "done": done, "total": total, "eta_seconds": round(eta_seconds, 1)}
    updates = {"progress": progress, "heartbeat_at": timezone.now()}
    if entry is not None:
        job.history.append(entry)
        updates["history"] = job.history
    Job.objects.filter(pk=job.pk).update(**updates)
    _announce(job, {"status": Job.Status.RUNNING, **progress, **({"last": entry} if entry else {})})
    if getattr(job, "on_progress", None):
        job.on_progress(progress)
    if Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
        raise JobCancelled


def job_dir(job: Job) -> Path:
    """Checkpoints and the training snapshot; named by id and creation time (ids can be reused)."""
    return Path(settings.DATA_DIR) / "private" / "synthesis" / f"job-{job.pk}-{job.created_at:%Y%m%dT%H%M%S%f}"


# -- pix2pix ------------------------------------------------------------------------------------


def _run_pix2pix(job: Job) -> None:
    from synthesis.engine import (
        Pix2PixConfig,
        Pix2PixTrainer,
        deform_masks,
        realism_report,
        sample_grid_png,
    )

    dataset, params = job.dataset, job.params
    size, seed = params["size"], params["seed"]
    folder = job_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = folder / "pairs.npz"
    if snapshot.exists():  # a resumed job trains on exactly what it started with
        saved = np.load(snapshot, allow_pickle=False)
        pairs = Pairs(saved["images"], saved["masks"], saved["tasks"].tolist())
    else:
        expert_train, _, others = split(dataset)
        _report(job, "gathering labels", 0, params["epochs"], 0.0)
        # Golds where an expert drew them, fused crowd labels elsewhere; never a held-out image.
        pairs = gold_pairs(dataset, expert_train, size) + fused_pairs(dataset, others, size)
        with open(snapshot.with_suffix(".tmp"), "wb") as f:
            np.savez(f, images=pairs.images, masks=pairs.masks, tasks=np.array(pairs.tasks, dtype=str))
        snapshot.with_suffix(".tmp").replace(snapshot)
    if len(pairs) < 4:
        raise DomainError(f"pix2pix needs at least 4 labelled training images, {dataset.name} has {len(pairs)}")
    config = Pix2PixConfig(size=size, epochs=params["epochs"], seed=seed)
    trainer = Pix2PixTrainer(config, n_classes=pairs.masks.shape[1])

    def progress(stats) -> bool:
        # A resumed run repeats no epoch, but a killed one may have recorded an epoch it never saved.
        job.history = [h for h in job.history if h["epoch"] < stats.epoch]
        entry = asdict(stats)
        _report(job, "training pix2pix", stats.epoch, stats.epochs, stats.eta_seconds, entry)
        return False

    history = trainer.fit(pairs.masks, pairs.images, checkpoint_dir=folder, progress=progress)
    trainer.save(folder / "generator.pt")

    count = params["samples"] or 2 * len(pairs)
    _report(job, "generating synthetic pairs", 0, count, 0.0)
    rng = np.random.default_rng(seed)
    new_masks = deform_masks(pairs.masks, count, rng)
    synthetic = trainer.generate(new_masks, seed=seed)
    classes = dataset_classes(dataset)
    sources = sorted({t for tasks in pairs.tasks for t in tasks})
    with transaction.atomic():
        SyntheticSample.objects.filter(job=job).delete()  # a resumed job makes its batch afresh
        SyntheticSample.objects.bulk_create(
            SyntheticSample(
                dataset=dataset,
                job=job,
                generator_version=trainer.version,
                seed=seed,
                index=i,
                image=figures.grey_png(synthetic[i]),
                size=size,
                masks={str(c.pk): rle.encode(new_masks[i, k]) for k, c in enumerate(classes)},
                source_tasks=sources,
            )
            for i in range(count)
        )
    realism = realism_report(pairs.images, synthetic) if len(pairs) >= 4 and count >= 2 else None
    figure = sample_grid_png(pairs.images, synthetic, new_masks, title=f"{dataset.name}: real vs synthetic")
    epoch_seconds = [e.seconds for e in history.epochs]
    Job.objects.filter(pk=job.pk).update(
        figure=figure,
        result={
            "generator_version": trainer.version,
            "training_pairs": len(pairs),
            "samples": count,
            "size": size,
            "device": str(trainer.device),
            "seconds_per_epoch": float(np.median(epoch_seconds)) if epoch_seconds else None,
            "realism": realism,
        },
    )


def synthetic_pairs(dataset: Dataset, size: int) -> tuple[Pairs, Job | None]:
    """The synthetic pairs of the dataset's latest finished pix2pix job, at ``size``."""
    from synthesis.engine import to_square

    job = Job.objects.filter(dataset=dataset, kind=Job.Kind.PIX2PIX, status=Job.Status.DONE).first()
    classes = dataset_classes(dataset)
    if job is None:
        return Pairs.empty(size, len(classes)), None
    samples = list(job.samples.order_by("index"))
    if not samples:
        return Pairs.empty(size, len(classes)), job
    images = np.stack([figures.grey_from_png(s.image) for s in samples])
    masks = np.stack([np.stack([rle.decode(s.masks[str(c.pk)]) for c in classes]) for s in samples])
    images, masks = to_square(images, masks, size)
    return Pairs(images, masks, [[] for _ in samples]), job


# -- validation ---------------------------------------------------------------------------------


def _run_validation(job: Job) -> None:
    from synthesis.engine import SegmenterConfig, report_png, run_validation

    dataset, params = job.dataset, job.params
    size = params["size"]
    expert_train, held_out, others = split(dataset)
    _report(job, "gathering labels", 0, 1, 0.0)
    test = gold_pairs(dataset, held_out, size)
    if len(test) < 2:
        raise DomainError(
            f"validation needs at least 2 held-out expert images; {dataset.name} has {len(test)} "
            f"(about {HELD_OUT_PERCENT} % of the images with expert golds are held out)"
        )
    expert = gold_pairs(dataset, expert_train, size)
    crowd = fused_pairs(dataset, others, size)
    synthetic, generator_job = synthetic_pairs(dataset, size)
    arms, skipped = {}, {}
    if len(expert):
        arms["expert_only"] = expert
    else:
        skipped["expert_only"] = "no expert gold outside the held-out set"
    for name, parts, missing in (
        ("fused", [crowd], "no crowd annotations on images without expert golds"),
        ("fused_synthetic", [crowd, synthetic], "needs crowd annotations and a finished pix2pix job"),
        ("expert_synthetic", [expert, synthetic], "needs expert golds and a finished pix2pix job"),
    ):
        if all(len(p) for p in parts):
            arms[name] = sum(parts[1:], parts[0])
        else:
            skipped[name] = missing
    if not arms:
        raise DomainError("nothing to train on: " + "; ".join(skipped.values()))
    seeds = list(range(params["seeds"]))
    job.history = []

    def progress(run: dict) -> bool:
        entry = {k: run[k] for k in ("run", "arm", "seed", "dice", "seconds") if k in run}
        _report(job, "training segmenters", run["run"], run["runs"], run.get("eta_seconds", 0.0), entry)
        return False

    report = run_validation(
        {name: (p.images, p.masks) for name, p in arms.items()},
        (test.images, test.masks),
        seeds,
        SegmenterConfig(steps=params["steps"]),
        baseline="expert_only" if "expert_only" in arms else None,
        class_names=[c.name for c in dataset_classes(dataset)],
        progress=progress,
    )
    report["skipped_arms"] = skipped
    report["held_out_images"] = len(test)
    report["generator_job"] = generator_job.pk if generator_job else None
    Job.objects.filter(pk=job.pk).update(result=report, figure=report_png(report))
