from django.conf import settings
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from annotations import exports, selectors, services
from annotations.io import ReadOptions
from annotations.models import ExportJob
from crowdseg.errors import NotFound, TooLarge

from .permissions import IsResearcher
from .serializers import (
    DatasetCreateSerializer,
    DatasetSerializer,
    ExportStartSerializer,
    GoldStandardSerializer,
    ImageImportResultSerializer,
    ImageImportSerializer,
    ImageSerializer,
    LabelClassSerializer,
    MaskInputSerializer,
)


class ImportThrottle(UserRateThrottle):
    scope = "import"


class DatasetListView(generics.ListAPIView):
    permission_classes = [IsResearcher]
    serializer_class = DatasetSerializer

    def get_queryset(self):
        return selectors.datasets_for_researcher(user=self.request.user).prefetch_related("label_classes")

    @extend_schema(request=DatasetCreateSerializer, responses={201: DatasetSerializer})
    def post(self, request):
        params = DatasetCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        dataset = services.dataset_create(owner=request.user, **params.validated_data)
        dataset = selectors.dataset_get_for_researcher(user=request.user, dataset_id=dataset.pk)
        return Response(DatasetSerializer(dataset).data, status=201)


class DatasetDetailView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses={200: DatasetSerializer})
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_researcher(user=request.user, dataset_id=dataset_id)
        return Response(DatasetSerializer(dataset).data)


class LabelClassCreateView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(request=LabelClassSerializer, responses={201: LabelClassSerializer})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_researcher(user=request.user, dataset_id=dataset_id)
        params = LabelClassSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        label_class = services.label_class_create(dataset=dataset, **params.validated_data)
        return Response(LabelClassSerializer(label_class).data, status=201)


class DatasetImagesView(generics.ListAPIView):
    """List a dataset's images; POST multipart ``files`` to import DICOM, NIfTI, PNG, JPEG or TIFF."""

    permission_classes = [IsResearcher]
    serializer_class = ImageSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_throttles(self):
        return [ImportThrottle()] if self.request.method == "POST" else super().get_throttles()

    def get_queryset(self):
        dataset = selectors.dataset_get_for_researcher(user=self.request.user, dataset_id=self.kwargs["dataset_id"])
        return selectors.images_of_dataset(dataset=dataset)

    @extend_schema(request=ImageImportSerializer, responses={201: ImageImportResultSerializer})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_researcher(user=request.user, dataset_id=dataset_id)
        params = ImageImportSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        files = params.validated_data["files"]
        too_big = [f.name for f in files if f.size > settings.CROWDSEG_MAX_UPLOAD_BYTES]
        if too_big:
            raise TooLarge(f"{too_big[0]}: file exceeds the upload limit of {settings.CROWDSEG_MAX_UPLOAD_BYTES} bytes")
        options = ReadOptions(
            ct_window=params.validated_data["ct_window"], nifti_axis=params.validated_data["nifti_axis"]
        )
        sources = [services.BytesSource(name=f.name, data=f.read()) for f in files]
        result = services.images_import(
            dataset=dataset, sources=sources, options=options, keep_file_names=params.validated_data["keep_file_names"]
        )
        body = {
            "created": len(result.created),
            "skipped": result.skipped,
            "images": ImageSerializer(result.created, many=True, context={"request": request}).data,
        }
        return Response(body, status=201)


class TaskGoldView(APIView):
    """The expert mask of a task (researchers of the dataset only)."""

    permission_classes = [IsResearcher]

    @extend_schema(responses={200: GoldStandardSerializer})
    def get(self, request, task_id):
        task = selectors.task_get_for_researcher(user=request.user, task_id=task_id)
        if not hasattr(task, "gold"):
            raise NotFound("this task has no gold standard")
        return Response(GoldStandardSerializer(task.gold).data)

    @extend_schema(request=MaskInputSerializer, responses={200: GoldStandardSerializer})
    def put(self, request, task_id):
        task = selectors.task_get_for_researcher(user=request.user, task_id=task_id)
        params = MaskInputSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        mask = services.mask_parse(
            height=task.image.height,
            width=task.image.width,
            rle_mask=params.validated_data.get("rle"),
            polygons=params.validated_data.get("polygons"),
        )
        gold = services.gold_standard_set(task=task, mask=mask, created_by=request.user)
        return Response(GoldStandardSerializer(gold).data)


# -- exports -------------------------------------------------------------------------------------


def export_data(job: ExportJob) -> dict:
    done = job.status == ExportJob.Status.DONE
    return {
        "id": job.pk,
        "dataset": job.dataset_id,
        "formats": job.formats,
        "contents": job.contents,
        "selection": job.selection,
        "options": job.options,
        "status": job.status,
        "progress": job.progress,
        "summary": job.summary,
        "error": job.error,
        "file_size": job.file_size if done else None,
        "download": reverse("export-download", args=[job.pk]) if done else None,
        "expires_at": job.expires_at,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


def _export(user, export_id: int) -> ExportJob:
    job = ExportJob.objects.filter(pk=export_id, dataset__in=selectors.datasets_for_researcher(user=user)).first()
    if job is None:
        raise NotFound(f"export {export_id} not found")
    return job


class DatasetExportsView(APIView):
    """Start an export of your dataset (a background job); follow it at ``GET /api/v1/exports/{id}``
    or as ``export.progress`` events on ``ws/v1/play``; download from its ``download`` link."""

    permission_classes = [IsResearcher]

    @extend_schema(request=ExportStartSerializer, responses={201: dict})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get_for_researcher(user=request.user, dataset_id=dataset_id)
        params = ExportStartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        job = services.export_start(dataset=dataset, requested_by=request.user, **params.export_arguments())
        return Response(export_data(ExportJob.objects.get(pk=job.pk)), status=201)


class ExportDetailView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses={200: dict})
    def get(self, request, export_id: int):
        return Response(export_data(_export(request.user, export_id)))


class ExportCancelView(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, export_id: int):
        return Response(export_data(services.export_cancel(job=_export(request.user, export_id))))


class ExportDownloadView(APIView):
    """The zip, for the researcher who asked for the export, until it expires (410 afterwards)."""

    permission_classes = [IsResearcher]

    @extend_schema(responses={(200, "application/zip"): bytes})
    def get(self, request, export_id: int):
        job = _export(request.user, export_id)
        path = services.export_file_for_download(job=job, user=request.user)
        name = f"{exports.slug(job.dataset.name)}-export-{job.pk}.zip"
        return FileResponse(path.open("rb"), as_attachment=True, filename=name, content_type="application/zip")
