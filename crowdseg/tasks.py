"""Service-level Celery tasks of the project itself."""

from celery import shared_task


@shared_task(name="crowdseg.health_echo")
def health_echo(token: str) -> str:
    """Return ``token``: proves a worker took a task off the broker and stored its result."""
    return token
