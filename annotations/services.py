"""Dataset actions: create datasets and label classes, import images, set gold standards, export."""

from __future__ import annotations

import errno
import hashlib
import hmac
import importlib.metadata
import io
import logging
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import models, transaction
from django.utils import timezone

from accounts.models import User
from crowdseg import events
from crowdseg.errors import Conflict, DomainError, NotFound
from inference.engine import rle

from . import exports, figures, fusion, selectors
from .io import DecodedImage, ReadOptions, deid, read_images
from .io.preprocess import display_rendition
from .models import (
    Annotation,
    AnnotatorReliability,
    Dataset,
    ExportJob,
    FusedLabel,
    GoldStandard,
    Image,
    LabelClass,
    SourceFormat,
    SuggestionUse,
    Task,
)
from .signals import images_imported

logger = logging.getLogger(__name__)


class ImportSource(Protocol):
    """A file to import: a name for messages and a way to get its bytes."""

    name: str

    def read(self) -> bytes: ...


@dataclass(frozen=True)
class PathSource:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class BytesSource:
    name: str
    data: bytes

    def read(self) -> bytes:
        return self.data


@dataclass
class ImportResult:
    created: list[Image] = field(default_factory=list)
    skipped: int = 0  # images already in the dataset (same file, same frame)


def dataset_create(*, name: str, owner: User, description: str = "", label_classes: Iterable[str] = ()) -> Dataset:
    if Dataset.objects.filter(name=name).exists():
        raise Conflict(f"a dataset named {name!r} exists", code="duplicate", fields={"name": ["taken"]})
    with transaction.atomic():
        dataset = Dataset.objects.create(name=name, owner=owner, description=description)
        for class_name in label_classes:
            label_class_create(dataset=dataset, name=class_name)
    return dataset


@transaction.atomic
def label_class_create(*, dataset: Dataset, name: str, color: str = "#ff5a36", instructions: str = "") -> LabelClass:
    """Add a structure to segment; every image of the dataset gets a task for it."""
    if LabelClass.objects.filter(dataset=dataset, name=name).exists():
        raise Conflict(f"label class {name!r} already exists in {dataset.name}", code="duplicate")
    label_class = LabelClass.objects.create(dataset=dataset, name=name, color=color, instructions=instructions)
    Task.objects.bulk_create(Task(image=image, label_class=label_class) for image in dataset.images.all())
    return label_class


def images_import(
    *,
    dataset: Dataset,
    sources: Iterable[ImportSource],
    options: ReadOptions | None = None,
    on_file: Callable[[str, int], None] | None = None,
    keep: Callable[[DecodedImage], bool] | None = None,
    keep_file_names: bool = False,
) -> ImportResult:
    """Import every image in ``sources`` into ``dataset``, all or nothing.

    Each file is decoded, de-identified and preprocessed by ``annotations.io``; each 2-D image
    gets a display rendition, a model input and one task per label class. Files already imported
    (same bytes, same frame: ``source_sha256`` and ``frame_key``, never the name) are skipped, so
    importing twice changes nothing.
    File names often hold patient names or IDs, so an image's ``source_name`` is an opaque name
    (``_source_name_opaque``) unless ``keep_file_names`` is True, the researcher's choice for
    this import. A skipped file keeps the name it was first imported with.
    A bad file raises ImageReadError naming it; then no row and no stored file remains.
    ``keep(image)``, when given, chooses which decoded images to import (e.g. some slices).
    ``on_file(name, images_created)`` is called after each file (progress bars).
    ``images_imported`` is sent once the transaction commits.
    """
    options = options or ReadOptions()
    result = ImportResult()
    written: list[tuple[Storage, str]] = []
    try:
        with transaction.atomic():
            label_classes = list(dataset.label_classes.all())
            for source in sources:
                data = source.read()
                sha = hashlib.sha256(data).hexdigest()
                decoded = read_images(data, source.name, options, uid_key=dataset.uid_key.encode())
                if keep is not None:
                    decoded = [d for d in decoded if keep(d)]
                present = set(
                    Image.objects.filter(dataset=dataset, source_sha256=sha).values_list("frame_key", flat=True)
                )
                new = [d for d in decoded if d.frame_key not in present]
                result.skipped += len(decoded) - len(new)
                for position, item in enumerate(new):
                    # The original upload (not de-identified) is kept only where a setting asks.
                    original = data if settings.CROWDSEG_KEEP_ORIGINALS and position == 0 else None
                    if keep_file_names:
                        name = source.name
                    else:
                        name = _source_name_opaque(dataset=dataset, sha256=sha, source_format=item.source_format)
                    image = _image_store(dataset, name, sha, item, original, written)
                    Task.objects.bulk_create(Task(image=image, label_class=lc) for lc in label_classes)
                    result.created.append(image)
                if on_file:
                    on_file(source.name, len(new))
            created = list(result.created)
            if created:
                transaction.on_commit(lambda: images_imported.send(sender=Image, images=created))
    except BaseException:
        for storage, name in written:
            storage.delete(name)
        raise
    return result


def _source_name_opaque(*, dataset: Dataset, sha256: str, source_format: str) -> str:
    """The name an imported file is stored under when its real name is not kept.

    ``<format>-<16 hex digits>``: HMAC-SHA256 of the file's sha256 under the dataset's secret.
    The same file gets the same name in the same dataset (frames and slices of one file share
    it; ``frame_key`` tells them apart); nothing of the real name is in it, and nobody without
    the secret can tell from it whether a given file was imported.
    """
    digest = hmac.new(dataset.uid_key.encode(), b"source-name:" + sha256.encode(), hashlib.sha256).hexdigest()
    return f"{source_format}-{digest[:16]}"


def _image_store(
    dataset: Dataset,
    source_name: str,
    sha: str,
    item: DecodedImage,
    original: bytes | None,
    written: list[tuple[Storage, str]],
) -> Image:
    height, width = item.pixels.shape[:2]
    image = Image(
        dataset=dataset,
        modality=item.modality,
        source_format=item.source_format,
        source_name=source_name[:255],
        source_sha256=sha,
        frame_key=item.frame_key,
        width=width,
        height=height,
        metadata=item.metadata,
        preprocessing=item.preprocessing,
    )
    if item.slice is not None:
        image.slice_axis, image.slice_index, image.slice_count = item.slice.axis, item.slice.index, item.slice.count
    stem = f"{dataset.pk}/{uuid.uuid4().hex}"
    display_bytes, ext = display_rendition(item.pixels)
    _save_file(image.display, f"{stem}.{ext}", display_bytes, written)
    buf = io.BytesIO()
    np.save(buf, item.pixels, allow_pickle=False)
    _save_file(image.model_input, f"{stem}.npy", buf.getvalue(), written)
    if original is not None:
        _save_file(image.original, f"{stem}.orig", original, written)
    image.save()
    return image


def _save_file(field_file, name: str, content: bytes, written: list[tuple[Storage, str]]) -> None:
    field_file.save(name, ContentFile(content), save=False)
    written.append((field_file.storage, field_file.name))


def image_model_input(image: Image) -> np.ndarray:
    """The (H, W, 3) uint8 array the model encodes."""
    with image.model_input.open("rb") as fh:
        return np.load(io.BytesIO(fh.read()), allow_pickle=False)


def image_grey(image: Image) -> np.ndarray:
    """The model input's grey levels: (H, W) float32 in [0, 1], the mean of its three channels."""
    return image_model_input(image).mean(axis=2, dtype=np.float32) / np.float32(255.0)


def mask_parse(*, height: int, width: int, rle_mask: dict | None = None, polygons: list | None = None) -> np.ndarray:
    """A mask sent by a client, as COCO RLE or as polygons, checked against the image size.

    Returns (H, W) bool. Raises DomainError naming what is wrong (size, malformed RLE, bad
    polygon); exactly one of ``rle_mask`` and ``polygons`` must be given.
    """
    if (rle_mask is None) == (polygons is None):
        raise DomainError("send the mask as either 'rle' or 'polygons'", code="invalid_mask")
    try:
        if rle_mask is not None:
            return rle.decode(rle_mask, expected_size=(height, width))
        return rle.from_polygons(polygons, height, width)
    except ValueError as exc:
        raise DomainError(f"invalid mask: {exc}", code="invalid_mask") from None


@transaction.atomic
def gold_standard_set(
    *, task: Task, mask: np.ndarray, created_by: User | None, source: str = GoldStandard.Source.EXPERT
) -> GoldStandard:
    """Make ``mask`` ((H, W) bool at the image's native size) the expert answer of ``task``."""
    if mask.shape != (task.image.height, task.image.width):
        raise DomainError(
            f"mask is {mask.shape[0]}x{mask.shape[1]} (height x width) but the image is "
            f"{task.image.height}x{task.image.width}",
            code="invalid_mask",
        )
    encoded = rle.encode(mask)
    gold, _ = GoldStandard.objects.update_or_create(
        task=task,
        defaults={"mask": encoded, "area": int(mask.sum()), "source": source, "created_by": created_by},
    )
    return gold


# -- research exports ----------------------------------------------------------------------------

EXPORT_LINK_LIFETIME = timedelta(days=3)  # a finished export's file and link live this long
_NEEDS_LABELS = ("nnunet", "dicom-seg")  # formats whose very point is the fused label


class ExportCancelled(Exception):
    pass


class Gone(DomainError):
    status = 410
    code = "gone"


def exports_dir() -> Path:
    """Where finished exports lie: private storage's folder, never served as media."""
    return Path(settings.DATA_DIR) / "private" / "exports"


def export_start(
    *,
    dataset: Dataset,
    requested_by: User | None,
    formats: Iterable[str],
    contents: Iterable[str] = ("images", "fused"),
    label_class_ids: Iterable[int] | None = None,
    campaign_id: int | None = None,
    min_confidence: float | None = None,
    review: Iterable[str] | None = None,
    nnunet_id: int = 501,
    ignore_above_bits: float | None = None,
    enqueue: bool = True,
) -> ExportJob:
    """Queue an export of ``dataset`` (on a Celery worker unless ``enqueue`` is False: then the
    caller runs it with ``export_run``). Everything that can be checked before writing is
    checked here and refused with a DomainError naming it, before any job exists: unknown
    formats or contents, classes or a campaign of another dataset, an empty selection, a class
    without fused labels (for formats that need them), DICOM SEG of images that are not DICOM.
    A campaign chooses its label classes. nnU-Net and DICOM SEG always carry the fused labels."""
    formats = list(dict.fromkeys(formats))
    contents = list(dict.fromkeys(contents))
    if any(f in _NEEDS_LABELS for f in formats) and "fused" not in contents:
        contents.append("fused")
    classes = _export_classes(dataset, label_class_ids, campaign_id)
    review = None if review is None else sorted(set(review))
    if review is not None and (not review or set(review) - set(FusedLabel.Review.values)):
        raise DomainError(
            f"review must be some of {', '.join(repr(v) for v in FusedLabel.Review.values)}",
            code="invalid_export",
            fields={"review": ["unknown status"]},
        )
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise DomainError("min_confidence is in [0, 1]", code="invalid_export", fields={"min_confidence": ["range"]})
    try:
        exports.ExportSpec(
            name=dataset.name,
            classes=tuple(exports.ExportClass(i, c.name) for i, c in enumerate(classes, start=1)),
            formats=tuple(formats),
            contents=tuple(contents),
            nnunet_id=nnunet_id,
            ignore_above_bits=ignore_above_bits,
        )
    except exports.ExportError as exc:
        raise DomainError(str(exc), code="invalid_export") from None
    job = ExportJob(
        dataset=dataset,
        requested_by=requested_by,
        formats=formats,
        contents=contents,
        selection={
            "label_classes": [c.pk for c in classes],
            "campaign": campaign_id,
            "min_confidence": min_confidence,
            "review": review,
        },
        options={"nnunet_id": nnunet_id, "ignore_above_bits": ignore_above_bits},
    )
    _export_check_selection(job, classes)
    with transaction.atomic():
        job.save()
        if enqueue:
            transaction.on_commit(lambda: _export_enqueue(job.pk))
    return job


def _export_classes(dataset: Dataset, label_class_ids, campaign_id) -> list[LabelClass]:
    classes = dataset.label_classes.order_by("pk")
    if campaign_id is not None:
        from django.apps import apps  # campaigns live in the game; annotations does not import it

        campaign = apps.get_model("gamification", "Campaign").objects.filter(pk=campaign_id, dataset=dataset).first()
        if campaign is None:
            raise DomainError(
                f"campaign {campaign_id} is not a campaign of {dataset.name}",
                code="invalid_export",
                fields={"campaign": ["not on this dataset"]},
            )
        classes = classes.filter(pk__in=campaign.label_classes.values("pk"))
    if label_class_ids is not None:
        wanted = set(label_class_ids)
        found = list(classes.filter(pk__in=wanted))
        if len(found) != len(wanted):
            raise DomainError(
                f"label classes {sorted(wanted - {c.pk for c in found})} are not in this export's choice",
                code="invalid_export",
                fields={"label_classes": ["not in the dataset (or campaign)"]},
            )
        return found
    return list(classes)


def _export_selection(job: ExportJob) -> selectors.ExportSelection:
    review = job.selection.get("review")
    return selectors.ExportSelection(
        dataset_id=job.dataset_id,
        label_classes=tuple(job.selection["label_classes"]),
        min_confidence=job.selection.get("min_confidence"),
        review=None if review is None else tuple(review),
        fused="fused" in job.contents or any(f in _NEEDS_LABELS for f in job.formats),
        gold="gold" in job.contents,
        raters="raters" in job.contents,
    )


def _export_check_selection(job: ExportJob, classes: list[LabelClass]) -> None:
    selection = _export_selection(job)
    if selection.fused:
        with_labels = set(
            FusedLabel.objects.filter(selection.fused_filter(), task__image__dataset=job.dataset_id)
            .values_list("task__label_class_id", flat=True)
            .distinct()
        )
        missing = [c.name for c in classes if c.pk not in with_labels]
        filtered = (
            " match the filters"
            if job.selection.get("min_confidence") is not None or job.selection.get("review")
            else ""
        )
        if missing:
            raise DomainError(
                f"no fused labels{filtered} "
                f"for {', '.join(repr(m) for m in missing)}: run the fusion (manage.py fuse) once the crowd has "
                "annotated, or leave these classes out",
                code="no_fused_labels",
                fields={"label_classes": missing},
            )
    images = selectors.export_images(selection)
    if not images.exists():
        raise DomainError(
            "the selection is empty: no image of these classes has what the export carries", code="empty_selection"
        )
    if "dicom-seg" in job.formats:
        other = images.exclude(source_format=SourceFormat.DICOM)
        if other.exists():
            kinds = sorted(set(other.values_list("source_format", flat=True)))
            raise DomainError(
                f"DICOM SEG needs images imported from DICOM; {other.count()} of the selected images are "
                f"{', '.join(k.upper() for k in kinds)}: export those as nnU-Net, COCO or masks",
                code="not_dicom",
            )
        if images.filter(metadata__number_of_frames__gt=1).exists():
            raise DomainError("DICOM SEG export does not cover frames of multi-frame DICOM files", code="not_dicom")


def _export_enqueue(job_id: int) -> None:
    from . import tasks

    tasks.export_run.delay(job_id)


def export_cancel(*, job: ExportJob) -> ExportJob:
    """Stop an export: a queued one at once, a running one at its next progress report (its
    partial file is removed)."""
    now = timezone.now()
    if not ExportJob.objects.filter(pk=job.pk, status=ExportJob.Status.QUEUED).update(
        status=ExportJob.Status.CANCELLED, finished_at=now
    ):
        ExportJob.objects.filter(pk=job.pk, status=ExportJob.Status.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def export_run(*, job_id: int, on_progress: Callable[[dict], None] | None = None) -> ExportJob | None:
    """Write the export (Celery task body). Safe to deliver twice: only one worker claims it.
    The zip appears whole or not at all; a failure (a full disk included) marks the job failed
    with a message that says why, a cancellation marks it cancelled."""
    now = timezone.now()
    claimed = ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.QUEUED).update(
        status=ExportJob.Status.RUNNING, started_at=now
    )
    if not claimed:
        return None
    job = ExportJob.objects.select_related("dataset").get(pk=job_id)
    target = exports_dir() / f"export-{job.pk}-{secrets.token_hex(8)}.zip"
    try:
        summary = _export_write(job, target, on_progress)
    except ExportCancelled:
        _export_finish(job, ExportJob.Status.CANCELLED)
    except exports.ExportError as exc:
        _export_finish(job, ExportJob.Status.FAILED, error=str(exc))
    except DomainError as exc:
        _export_finish(job, ExportJob.Status.FAILED, error=exc.message)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            message = (
                "the disk of the data directory filled up during the export; the partial file was removed. "
                "Free some space, or export fewer images or contents."
            )
        else:
            message = f"could not write the export: {exc.strerror or exc}"
        _export_finish(job, ExportJob.Status.FAILED, error=message)
    except Exception as exc:
        logger.exception("export %s failed", job.pk)
        _export_finish(job, ExportJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _export_finish(
            job,
            ExportJob.Status.DONE,
            file_name=target.name,
            file_size=target.stat().st_size,
            summary=summary,
            expires_at=timezone.now() + EXPORT_LINK_LIFETIME,
        )
    return ExportJob.objects.get(pk=job.pk)


def _export_finish(job: ExportJob, status: str, error: str = "", **fields) -> None:
    ExportJob.objects.filter(pk=job.pk).update(
        status=status, error=error, finished_at=timezone.now(), cancel_requested=False, **fields
    )
    _export_announce(job, {"status": status, "error": error})


def _export_announce(job: ExportJob, payload: dict) -> None:
    if job.requested_by_id:
        events.publish(job.requested_by_id, "export.progress", {"export": job.pk, **payload})


def _export_write(job: ExportJob, target: Path, on_progress) -> dict:
    selection = _export_selection(job)
    classes = list(LabelClass.objects.filter(pk__in=selection.label_classes).order_by("pk"))
    spec = exports.ExportSpec(
        name=job.dataset.name,
        classes=tuple(exports.ExportClass(i, c.name, c.color) for i, c in enumerate(classes, start=1)),
        formats=tuple(job.formats),
        contents=tuple(job.contents),
        nnunet_id=job.options.get("nnunet_id", 501),
        ignore_above_bits=job.options.get("ignore_above_bits"),
    )
    index_of = {c.pk: i for i, c in enumerate(classes, start=1)}
    total = selectors.export_images(selection).count()

    def report(done: int) -> None:
        progress = {"stage": "writing", "done": done, "total": total}
        ExportJob.objects.filter(pk=job.pk).update(progress=progress)
        _export_announce(job, {"status": ExportJob.Status.RUNNING, **progress})
        if on_progress:
            on_progress(progress)
        if ExportJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
            raise ExportCancelled

    report(0)
    needs_probability = spec.ignore_above_bits is not None or spec.wants("probability") or spec.wants("uncertainty")
    groups: dict[str, str] = {}
    cases = (
        _export_case(record, n, index_of, groups, needs_probability)
        for n, record in enumerate(selectors.export_records(selection), start=1)
    )
    modality = (
        Image.objects.filter(dataset=job.dataset_id).values_list("modality", flat=True).order_by("modality").first()
    )
    return exports.export_write(
        target,
        spec,
        cases,
        facts=_export_facts(job, selection, classes),
        reliability_csv=exports.reliability_csv(
            reliability_rows(AnnotatorReliability.objects.filter(label_class__in=classes))
        ),
        modality=modality or "OT",
        synthetic=_export_synthetic(job, index_of) if spec.wants("synthetic") else (),
        progress=report,
    )


def _export_case(
    record: selectors.ExportRecord, n: int, index_of: dict[int, int], groups: dict[str, str], probability: bool
) -> exports.ExportCase:
    from accounts.services import rater_id

    image = record.image
    pixels = image_model_input(image)
    if image.modality != "RGB":
        pixels = pixels[..., 0]  # greyscale is stored as three equal channels
    meta = image.metadata or {}
    spacing = meta.get("pixel_spacing_mm") or (1.0, 1.0)
    # Slices of one volume, and DICOM images of one study, share a group (a fold, in nnU-Net).
    source = meta.get("study_uid") or image.source_sha256
    group = groups.setdefault(source, f"group-{len(groups) + 1:04d}")
    case = exports.ExportCase(
        case_id=f"case_{n:05d}",
        image=pixels,
        spacing=(float(spacing[0]), float(spacing[1])),
        group=group,
        source=f"{image.source_name} [{image.frame_key}]",
        source_format=image.source_format,
        frame_count=int(meta.get("number_of_frames") or 1),
        dicom=meta.get("dicom") if image.source_format == SourceFormat.DICOM else None,
    )
    for class_id, fused in record.fused.items():
        k = index_of[class_id]
        case.fused[k] = rle.decode(fused.mask)
        case.confidence[k] = fused.confidence
        if probability:
            case.probability[k] = figures.grey_from_png(fused.probability)
    for class_id, gold in record.golds.items():
        case.golds[index_of[class_id]] = rle.decode(gold.mask)
    for class_id, submitted in record.annotations.items():
        # A rater who submitted twice is represented by their latest mask.
        case.raters[index_of[class_id]] = {rater_id(a.annotator_id): rle.decode(a.mask) for a in submitted}
    return case


def reliability_rows(rows) -> list[exports.ReliabilityRow]:
    """Reliability estimates as the exports' table rows: raters by opaque id, the model as ``model``."""
    from accounts.services import rater_id

    rows = rows.select_related("label_class__dataset").order_by("label_class_id", "-weight", "pk")
    return [
        exports.ReliabilityRow(
            dataset=r.label_class.dataset.name,
            label_class=r.label_class.name,
            rater=rater_id(r.annotator_id) if r.annotator_id else exports.reliability.MODEL_RATER,
            weight=r.weight,
            rates={f: getattr(r, f) for f in exports.reliability.FIELDS},
            images=r.images,
            golds=r.golds,
            anchored=r.anchored,
        )
        for r in rows
    ]


def _export_synthetic(job: ExportJob, index_of: dict[int, int]) -> Iterator[exports.SyntheticCase]:
    from django.apps import apps

    sample_model = apps.get_model("synthesis", "SyntheticSample")
    samples = sample_model.objects.filter(dataset=job.dataset_id, job__status="done", job__kind="pix2pix")
    for n, sample in enumerate(samples.order_by("job_id", "index").iterator(chunk_size=200), start=1):
        grey = np.round(figures.grey_from_png(sample.image) * 255).astype(np.uint8)
        masks = {index_of[int(k)]: rle.decode(v) for k, v in sample.masks.items() if int(k) in index_of}
        yield exports.SyntheticCase(f"synthetic_{n:05d}", grey, masks, sample.generator_version, sample.seed)


def _export_facts(job: ExportJob, selection: selectors.ExportSelection, classes: list[LabelClass]) -> exports.CardFacts:
    from django.apps import apps

    from . import consensus

    images = selectors.export_images(selection)
    annotations = Annotation.objects.filter(task__image__in=images, task__label_class__in=classes)
    total = annotations.count()
    anchored = annotations.filter(suggestion_use=SuggestionUse.ACCEPTED).count()
    counts = sorted(selectors.export_rater_counts(selection))
    reliability = []
    for label_class in classes:
        estimates = list(AnnotatorReliability.objects.filter(label_class=label_class, annotator__isnull=False))
        if estimates:
            reliability.append(
                {
                    "label_class": label_class.name,
                    "raters": len(estimates),
                    "median_weight": round(float(np.median([e.weight for e in estimates])), 4),
                    "median_sensitivity": round(float(np.median([e.sensitivity for e in estimates])), 4),
                    "median_precision": round(float(np.median([e.precision for e in estimates])), 4),
                }
            )
    synthetic = {"count": 0}
    validation = None
    if apps.is_installed("synthesis"):
        synthesis_job = apps.get_model("synthesis", "Job")
        samples = apps.get_model("synthesis", "SyntheticSample").objects.filter(dataset=job.dataset_id)
        synthetic = {"count": samples.count(), "exported": "synthetic" in job.contents}
        latest = synthesis_job.objects.filter(dataset=job.dataset_id, kind="validation", status="done").first()
        if latest is not None:
            result = latest.result or {}
            validation = {k: result[k] for k in ("relative_gain", "held_out_images", "arms") if k in result}
    models_used = []
    if apps.is_installed("inference"):
        embeddings = apps.get_model("inference", "ImageEmbedding").objects.filter(image__in=images)
        models_used = sorted(set(embeddings.values_list("model_version", flat=True)))
    source_formats = dict(
        images.values_list("source_format").annotate(n=models.Count("pk")).values_list("source_format", "n")
    )
    return exports.CardFacts(
        name=job.dataset.name,
        description=job.dataset.description,
        licence=job.dataset.licence,
        source_formats=source_formats,
        deidentification={
            "dicom": {"method": list(deid.METHOD), "code": list(deid.METHOD_CODE)},
            "other": "no file header kept; file names replaced by opaque names unless the researcher kept them",
            "raters": "opaque rater ids only (no usernames, pseudonyms or database ids)",
        },
        exported_at=timezone.now().isoformat(),
        crowdseg_version=crowdseg_version(),
        formats=list(job.formats),
        contents=list(job.contents),
        filters={k: v for k, v in job.selection.items() if k != "label_classes"},
        classes=[{"index": i, "name": c.name} for i, c in enumerate(classes, start=1)],
        cases=0,
        training_cases=0,
        raters=annotations.values("annotator").distinct().count(),
        raters_per_image={
            "min": counts[0] if counts else 0,
            "median": float(np.median(counts)) if counts else 0,
            "mean": round(float(np.mean(counts)), 2) if counts else 0,
            "max": counts[-1] if counts else 0,
        },
        reliability=reliability,
        fusion={
            "method": "reliability-weighted EM over the whole label class (STAPLE family; annotations.fusion)",
            "prior": asdict(fusion.Prior()),
            "review_below_confidence": consensus.REVIEW_BELOW_CONFIDENCE,
            "settle_confidence": consensus.SETTLE_CONFIDENCE,
            "votes_per_image": [consensus.MIN_VOTES, consensus.MAX_VOTES],
        },
        gold_count=GoldStandard.objects.filter(task__image__in=images, task__label_class__in=classes).count(),
        anchoring_share=round(anchored / total, 4) if total else None,
        suggestion_models=models_used,
        synthetic=synthetic,
        validation=validation,
    )


def crowdseg_version() -> str:
    try:
        return importlib.metadata.version("crowdseg")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export_file_for_download(*, job: ExportJob, user: User, now: datetime | None = None) -> Path:
    """The zip of a finished export, for the user who requested it and nobody else (NotFound for
    everyone else, as if it did not exist), until it expires (Gone afterwards)."""
    now = now or timezone.now()
    if job.requested_by_id is None or job.requested_by_id != user.pk:
        raise NotFound(f"export {job.pk} not found")
    if job.status == ExportJob.Status.EXPIRED or (job.status == ExportJob.Status.DONE and job.expires_at <= now):
        raise Gone(f"export {job.pk} expired at {job.expires_at:%Y-%m-%d %H:%M} UTC: export again", code="expired")
    if job.status != ExportJob.Status.DONE:
        raise Conflict(f"export {job.pk} is {job.get_status_display().lower()}, there is no file", code="not_ready")
    path = exports_dir() / job.file_name
    if not path.is_file():
        raise Gone(f"the file of export {job.pk} is gone: export again", code="expired")
    return path


def exports_expire(*, now: datetime | None = None) -> int:
    """Periodic: remove the files of exports whose link expired. Returns how many."""
    now = now or timezone.now()
    expired = ExportJob.objects.filter(status=ExportJob.Status.DONE, expires_at__lte=now)
    count = 0
    for job in expired:
        (exports_dir() / job.file_name).unlink(missing_ok=True)
        count += ExportJob.objects.filter(pk=job.pk, status=ExportJob.Status.DONE).update(
            status=ExportJob.Status.EXPIRED, file_name=""
        )
    return count
