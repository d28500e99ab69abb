"""Datasets of medical images, what to segment in them, and the masks people draw.

Masks are stored as COCO RLE dicts (``{"size": [H, W], "counts": "..."}``, column-major, see
``inference.engine.rle``); areas are in pixels of the image's native resolution.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.core.files.storage import storages
from django.db import models


def _private_storage():
    return storages["private"]


def _uid_key() -> str:
    return secrets.token_hex(32)


class Modality(models.TextChoices):
    CT = "CT", "CT"
    MR = "MR", "MR"
    RGB = "RGB", "Colour (photograph, microscopy, colour DICOM)"
    OT = "OT", "Other greyscale"


class SourceFormat(models.TextChoices):
    DICOM = "dicom", "DICOM"
    NIFTI = "nifti", "NIfTI"
    PNG = "png", "PNG"
    JPEG = "jpeg", "JPEG"
    TIFF = "tiff", "TIFF"


class Dataset(models.Model):
    """A researcher's collection of images. Its owner and collaborators research it: they see and
    change its images, classes, golds, labels, campaigns and jobs (``annotations.selectors``);
    nobody else does, staff included. Only the owner chooses the collaborators."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    licence = models.CharField(
        max_length=200, blank=True, help_text="Under which terms the images and labels may be used (exports state it)"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    collaborators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="collaborations",
        help_text="Researchers who work on this dataset with its owner",
    )
    # Secret that DICOM UIDs are remapped with: consistent within the dataset, unlinkable across.
    uid_key = models.CharField(max_length=64, default=_uid_key, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class LabelClass(models.Model):
    """A structure to segment (white matter, liver, lesion)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="label_classes")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#ff5a36", help_text="Overlay colour, #rrggbb")
    instructions = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="labelclass_unique_name")]
        verbose_name_plural = "label classes"

    def __str__(self) -> str:
        return f"{self.dataset} / {self.name}"


class Image(models.Model):
    """One 2-D image: a PNG, a DICOM frame or a slice of a volume.

    ``display`` is what phones load (bounded size, no metadata); ``model_input`` is the (H, W, 3)
    uint8 array the model encodes, kept in private storage. ``width``/``height`` are the native
    size in pixels, which masks must match.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    modality = models.CharField(max_length=3, choices=Modality.choices)
    source_format = models.CharField(max_length=5, choices=SourceFormat.choices)
    source_name = models.CharField(
        max_length=255,
        help_text="An opaque name of the imported file (its own name only where the import kept file names)",
    )
    source_sha256 = models.CharField(max_length=64, help_text="sha256 of the imported file")
    frame_key = models.CharField(max_length=64, help_text="Which image inside the file")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    display = models.FileField(upload_to="display/")
    model_input = models.FileField(upload_to="model-input/", storage=_private_storage)
    original = models.FileField(upload_to="originals/", storage=_private_storage, blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="De-identified")
    preprocessing = models.JSONField(default=dict, blank=True)
    slice_axis = models.CharField(max_length=10, blank=True)
    slice_index = models.PositiveIntegerField(null=True, blank=True)
    slice_count = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "source_sha256", "frame_key"], name="image_unique_source")
        ]
        indexes = [models.Index(fields=["dataset", "created_at"])]

    def __str__(self) -> str:
        return f"{self.source_name} [{self.frame_key}]"


class Task(models.Model):
    """Segment one label class in one image. Its id is opaque: clients cannot order or date it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="tasks")
    label_class = models.ForeignKey(LabelClass, on_delete=models.CASCADE, related_name="tasks")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "label_class"], name="task_unique_image_class")]

    def __str__(self) -> str:
        return f"{self.label_class.name} in {self.image}"


class SuggestionUse(models.TextChoices):
    NONE = "none", "Drawn without the suggestion"
    ACCEPTED = "accepted", "Suggestion accepted unchanged"
    EDITED = "edited", "Suggestion edited"


class Annotation(models.Model):
    """A mask someone submitted for a task. ``client_key`` makes a submission idempotent."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotations")
    mask = models.JSONField(help_text="COCO RLE")
    area = models.PositiveIntegerField(help_text="Foreground pixels")
    suggestion_use = models.CharField(max_length=8, choices=SuggestionUse.choices, default=SuggestionUse.NONE)
    suggestion_prompt = models.JSONField(null=True, blank=True, help_text="Box/points the suggestion came from")
    time_spent_ms = models.PositiveIntegerField(default=0)
    client_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["annotator", "client_key"], name="annotation_unique_client_key")]
        indexes = [models.Index(fields=["task", "created_at"])]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.task_id}"


class GoldStandard(models.Model):
    """The expert mask of a task: never sent to a volunteer's client."""

    class Source(models.TextChoices):
        IMPORT = "import", "Imported"
        EXPERT = "expert", "Drawn by an expert"
        REVIEW = "review", "Accepted in review"

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="gold")
    mask = models.JSONField(help_text="COCO RLE")
    area = models.PositiveIntegerField(help_text="Foreground pixels")
    source = models.CharField(max_length=6, choices=Source.choices, default=Source.EXPERT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"gold of {self.task_id}"


class FusedLabel(models.Model):
    """The crowd's label of a task from the latest fusion (``annotations.fusion``), and its review.

    ``probability`` is the posterior P(foreground) as an 8-bit greyscale PNG (0..255) at the
    image's native size; ``confidence`` is the engine's per-image confidence in [0, 1];
    ``gain`` how much one more annotation is worth (active sampling); ``settled`` that the
    task needs no more annotations.
    """

    class Review(models.TextChoices):
        NONE = "", "Not needed"
        NEEDED = "needed", "Needs review"
        ACCEPTED = "accepted", "Accepted as gold"
        CORRECTED = "corrected", "Corrected by an expert"

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="fused")
    mask = models.JSONField(help_text="COCO RLE")
    area = models.PositiveIntegerField(help_text="Foreground pixels")
    probability = models.BinaryField(help_text="PNG, 8-bit: P(foreground) * 255")
    confidence = models.FloatField()
    votes = models.PositiveSmallIntegerField(help_text="Independent votes (unchanged acceptances count once)")
    annotation_count = models.PositiveIntegerField(default=0, help_text="Annotations fused into this label")
    gain = models.FloatField(default=0.0)
    settled = models.BooleanField(default=False)
    review = models.CharField(max_length=9, choices=Review.choices, default=Review.NONE, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"fused label of {self.task_id}"


class AnnotatorReliability(models.Model):
    """An annotator's estimated reliability for one label class, from the latest full fusion.

    ``annotator`` is null for the AI model (votes that accepted its suggestion unchanged).
    Rates are posterior means with their standard deviations; ``weight`` is the engine's cautious
    Youden's J in [0, 1] (see ``annotations.fusion.types.AnnotatorEstimate``).
    """

    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="reliabilities"
    )
    label_class = models.ForeignKey(LabelClass, on_delete=models.CASCADE, related_name="reliabilities")
    sensitivity = models.FloatField()
    precision = models.FloatField()
    specificity = models.FloatField()
    sensitivity_sd = models.FloatField()
    precision_sd = models.FloatField()
    specificity_sd = models.FloatField()
    images = models.PositiveIntegerField()
    golds = models.PositiveIntegerField()
    anchored = models.PositiveIntegerField(default=0)
    weight = models.FloatField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["annotator", "label_class"], name="reliability_unique_annotator"),
            models.UniqueConstraint(
                fields=["label_class"], condition=models.Q(annotator__isnull=True), name="reliability_unique_model"
            ),
        ]
        verbose_name_plural = "annotator reliabilities"

    def __str__(self) -> str:
        return f"{self.annotator or 'AI model'} on {self.label_class}: {self.weight:.2f}"


class ExportJob(models.Model):
    """A research export of a dataset (``annotations.exports``), run on a Celery worker.

    ``formats``, ``contents`` and ``selection`` (label class ids, campaign, confidence and review
    filters) say what is written; ``options`` the format options (nnU-Net id, ignore threshold).
    The zip lies in ``DATA_DIR/private/exports`` as ``file_name`` until ``expires_at``; only
    ``requested_by`` may download it (``annotations.services.export_file_for_download``).
    ``progress`` is the latest {"stage", "done", "total"}.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired (file removed)"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="exports"
    )
    formats = models.JSONField(default=list)
    contents = models.JSONField(default=list)
    selection = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="What each format wrote")
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    file_name = models.CharField(max_length=200, blank=True)
    file_size = models.PositiveBigIntegerField(default=0, help_text="Bytes")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.dataset} ({', '.join(self.formats)}, {self.status})"
