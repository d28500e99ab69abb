"""Long jobs on a dataset (pix2pix training, validation) and the synthetic pairs they make.

A ``Job`` runs on a Celery worker, one active job per dataset. Its checkpoint folder survives a
killed worker: the job is re-delivered (late acks) or resumed from the admin, and picks up from the
last finished epoch. ``SyntheticSample`` rows are never tasks: volunteers do not see them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Job(models.Model):
    class Kind(models.TextChoices):
        PIX2PIX = "pix2pix", "Train pix2pix and generate synthetic pairs"
        VALIDATION = "validation", "Validate the dataset (expert vs crowd vs synthetic)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    dataset = models.ForeignKey("annotations.Dataset", on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="Latest: stage, done, total, eta_seconds")
    history = models.JSONField(default=list, blank=True, help_text="Per epoch (pix2pix) or per trained model")
    result = models.JSONField(default=dict, blank=True)
    figure = models.BinaryField(blank=True, default=b"", help_text="PNG: sample grid or validation plot")
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset"],
                condition=models.Q(status__in=["queued", "running"]),
                name="job_one_active_per_dataset",
            )
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.dataset} ({self.status})"


class SyntheticSample(models.Model):
    """A generated image with the mask it was generated from, and where both came from."""

    dataset = models.ForeignKey("annotations.Dataset", on_delete=models.CASCADE, related_name="synthetic_samples")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="samples")
    generator_version = models.CharField(max_length=12, help_text="sha256 of the generator's weights, 12 hex")
    seed = models.BigIntegerField()
    index = models.PositiveIntegerField(help_text="Position in the job's batch")
    image = models.BinaryField(help_text="PNG, 8-bit greyscale, size x size")
    size = models.PositiveSmallIntegerField(help_text="Side in pixels")
    masks = models.JSONField(help_text="{label class id: COCO RLE} at size x size")
    source_tasks = models.JSONField(help_text="Tasks whose masks the deformation drew from")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="sample_unique_index")]

    def __str__(self) -> str:
        return f"synthetic {self.index} of job {self.job_id}"
