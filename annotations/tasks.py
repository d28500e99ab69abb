"""Celery tasks: thin wrappers over the annotations services."""

from celery import shared_task

from . import services


@shared_task(ignore_result=True, acks_late=True)
def export_run(job_id: int) -> None:
    services.export_run(job_id=job_id)


@shared_task(ignore_result=True)
def exports_expire() -> int:
    """Periodic (celery beat): remove the files of exports whose download link expired."""
    return services.exports_expire()
