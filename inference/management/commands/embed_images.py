"""manage.py embed_images: compute missing MedSAM embeddings for the current model."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotations.models import Image
from inference import services
from inference.models import ImageEmbedding


class Command(BaseCommand):
    help = (
        "Compute the embedding of every image (or of one dataset's) that has no ready embedding for "
        "the current model, in this process, with a progress bar. --force recomputes all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", help="only this dataset (name)")
        parser.add_argument("--force", action="store_true", help="recompute ready embeddings too")

    def handle(self, *args, **opts):
        try:
            version = services.model_manifest().version
        except services.ModelUnavailable as exc:
            raise CommandError(exc.message) from None
        images = Image.objects.order_by("dataset_id", "source_name", "slice_index")
        if opts["dataset"]:
            images = images.filter(dataset__name=opts["dataset"])
            if not images.exists():
                raise CommandError(f"dataset {opts['dataset']!r} has no images (or does not exist)")
        if not opts["force"]:
            ready = ImageEmbedding.objects.filter(model_version=version, status=ImageEmbedding.Status.READY)
            images = images.exclude(pk__in=ready.values("image_id"))
        todo = list(images)
        failed = 0
        for image in tqdm(todo, unit="image", disable=opts["verbosity"] == 0, file=self.stderr._out):
            embedding, _ = ImageEmbedding.objects.get_or_create(image=image, model_version=version)
            # Reset so this process claims it, whatever state an earlier run left it in.
            ImageEmbedding.objects.filter(pk=embedding.pk).update(status=ImageEmbedding.Status.PENDING, attempts=0)
            embedding = services.embedding_compute(embedding_id=embedding.pk)
            failed += embedding.status != ImageEmbedding.Status.READY
        self.stdout.write(f"model {version}: {len(todo) - failed} embeddings computed, {failed} failed")
        if failed:
            raise CommandError(f"{failed} images could not be encoded; see their embedding rows in the admin")
