"""Image embeddings: the MedSAM encoder's output, computed once per image and model version."""

from __future__ import annotations

from django.db import models

from annotations.models import Image, _private_storage


class ImageEmbedding(models.Model):
    """The encoder output of one image for one model version, stored as (256, 64, 64) float16.

    Computed by a Celery task that claims the row (PENDING -> RUNNING) so running it twice is
    harmless; a RUNNING row whose worker died is claimed again once it is stale.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="embeddings")
    model_version = models.CharField(max_length=64)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    file = models.FileField(upload_to="embeddings/", storage=_private_storage, blank=True)
    error = models.TextField(blank=True)
    encode_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Encoder time, milliseconds")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="embedding_unique_image_version")
        ]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"{self.image_id} @ {self.model_version}: {self.status}"
