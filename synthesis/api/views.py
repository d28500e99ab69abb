"""Researchers' job endpoints: thin adapters over ``synthesis.services``."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.api.permissions import IsResearcher
from annotations.selectors import dataset_get_for_researcher, datasets_for_researcher
from crowdseg.api import MaxJSONBytes, StrictJSON
from crowdseg.errors import NotFound
from synthesis import services
from synthesis.models import Job


class JobStartSerializer(StrictJSON, serializers.Serializer):
    kind = serializers.ChoiceField(choices=Job.Kind.choices)
    # Checked name by name by ``services.job_start``; a few integers at most.
    params = serializers.DictField(required=False, default=dict, validators=[MaxJSONBytes(4096)])


def job_data(job: Job) -> dict:
    return {
        "id": job.pk,
        "dataset": job.dataset_id,
        "kind": job.kind,
        "status": job.status,
        "params": job.params,
        "progress": job.progress,
        "history": job.history,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _job(user, job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id, dataset__in=datasets_for_researcher(user=user)).first()
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


class DatasetJobsView(APIView):
    """Start a pix2pix or validation job on your dataset; progress arrives as ``job.progress``
    events on ``ws/v1/play`` and at ``GET /api/v1/jobs/{id}``."""

    permission_classes = [IsResearcher]

    @extend_schema(request=JobStartSerializer, responses={201: dict})
    def post(self, request, dataset_id: int):
        dataset = dataset_get_for_researcher(user=request.user, dataset_id=dataset_id)
        params = JobStartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        job = services.job_start(dataset=dataset, created_by=request.user, **params.validated_data)
        return Response(job_data(Job.objects.get(pk=job.pk)), status=201)


class JobDetailView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses={200: dict})
    def get(self, request, job_id: int):
        return Response(job_data(_job(request.user, job_id)))


class JobCancelView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, job_id: int):
        return Response(job_data(services.job_cancel(job=_job(request.user, job_id))))


class JobResumeView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, job_id: int):
        return Response(job_data(services.job_resume(job=_job(request.user, job_id))))
