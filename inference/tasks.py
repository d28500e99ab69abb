from celery import shared_task
from django.db import OperationalError

from . import services


@shared_task(
    name="inference.embed_image",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
)
def embed_image(embedding_id: int) -> str:
    """Run the MedSAM encoder for one ImageEmbedding row (safe to run twice)."""
    return services.embedding_compute(embedding_id=embedding_id).status
