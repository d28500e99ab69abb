"""Celery tasks: thin wrappers over the synthesis services."""

from celery import shared_task

from . import services


@shared_task(ignore_result=True, acks_late=True)
def job_run(job_id: int) -> None:
    services.job_run(job_id=job_id)


@shared_task(ignore_result=True)
def jobs_resume_stale() -> int:
    """Periodic (celery beat): jobs whose worker died go back to the queue and resume."""
    return services.jobs_resume_stale()
