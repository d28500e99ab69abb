from django.http import FileResponse, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from annotations import selectors
from crowdseg.errors import DomainError, NotFound
from inference import services

from .serializers import ModelSerializer, PromptSerializer, SuggestionSerializer, suggestion_data


class SuggestThrottle(UserRateThrottle):
    scope = "suggest"


def _server_timing(response, ms: float):
    response["Server-Timing"] = f"suggest;dur={ms:.1f}"
    return response


class SuggestView(APIView):
    """MedSAM's mask for a box and/or points on a task's image.

    409 with Retry-After while the image is still being encoded (it is already queued).
    """

    throttle_classes = [SuggestThrottle]

    @extend_schema(request=PromptSerializer, responses={200: SuggestionSerializer, 409: OpenApiResponse()})
    def post(self, request, task_id):
        task = selectors.task_get_for_suggestions(user=request.user, task_id=task_id)
        params = PromptSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        suggestion = services.suggestion_make(task=task, **params.validated_data)
        return _server_timing(Response(suggestion_data(suggestion)), suggestion.server_ms)


class InitialMaskView(APIView):
    """A mask to show before the volunteer draws anything (204 when there is nothing to go on)."""

    throttle_classes = [SuggestThrottle]

    @extend_schema(responses={200: SuggestionSerializer, 204: None, 409: OpenApiResponse()})
    def get(self, request, task_id):
        task = selectors.task_get_for_suggestions(user=request.user, task_id=task_id)
        suggestion = services.initial_mask(task=task)
        if suggestion is None:
            return Response(status=204)
        return _server_timing(Response(suggestion_data(suggestion)), suggestion.server_ms)


class TaskEmbeddingView(APIView):
    """The task image's embedding, for decoding on the device (see /api/v1/models/current).

    ``?encoding=int8`` (default, 1 MiB: per-channel symmetric int8) or ``float16`` (2 MiB). Body:
    the 8 bytes ``CSEMB1`` + format byte + 0, then C, H, W as little-endian uint32, then (int8
    only) C float32 scales, then the C*H*W values, little-endian, C-order.
    """

    throttle_classes = [SuggestThrottle]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(), 409: OpenApiResponse()})
    def get(self, request, task_id):
        task = selectors.task_get_for_suggestions(user=request.user, task_id=task_id)
        fmt = request.query_params.get("encoding", "int8")
        if fmt not in services.EMBEDDING_FORMATS:
            raise DomainError(f"encoding must be one of {sorted(services.EMBEDDING_FORMATS)}", code="invalid_encoding")
        embedding = services.embedding_ready(image=task.image)
        etag = f'"{embedding.model_version}-{embedding.image_id}-{fmt}"'
        if request.headers.get("If-None-Match") == etag:
            return HttpResponse(status=304, headers={"ETag": etag})
        body = services.embedding_payload(embedding, fmt)
        return HttpResponse(
            body,
            content_type="application/octet-stream",
            headers={
                "ETag": etag,
                "Cache-Control": "private, max-age=604800",
                "X-Model-Version": embedding.model_version,
            },
        )


class ModelCurrentView(APIView):
    """The model the server suggests with, and where a client gets its decoder.

    On the device: fetch a task's embedding, run the context graph on it once, then the decoder
    graph for each prompt (see the manifest's ``io`` and the README).
    """

    @extend_schema(responses={200: ModelSerializer})
    def get(self, request):
        manifest = services.model_manifest()

        def url(entry):
            return request.build_absolute_uri(f"/api/v1/models/decoders/{entry.sha256}.onnx")

        return Response(
            {
                "model_version": manifest.version,
                "model_name": manifest.model_name,
                "input_size": manifest.input_size,
                "preprocess": {"input_size": manifest.preprocess.input_size, "mode": manifest.preprocess.mode},
                "embedding_shape": list(manifest.embedding_shape),
                "low_res_size": list(manifest.low_res_size),
                "context_url": url(manifest.context),
                "context_sha256": manifest.context.sha256,
                "context_bytes": manifest.context.size,
                "decoder_url": url(manifest.decoder),
                "decoder_sha256": manifest.decoder.sha256,
                "decoder_bytes": manifest.decoder.size,
            }
        )


class DecoderDownloadView(APIView):
    """The context or decoder graph as ONNX, named by its SHA-256: immutable, cache it forever."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse()})
    def get(self, request, sha256: str):
        manifest = services.model_manifest()
        entry = next((e for e in (manifest.context, manifest.decoder) if e.sha256 == sha256), None)
        if entry is None:
            raise NotFound("this graph is not served; see /api/v1/models/current")
        # FileResponse closes the file when the response is done.
        response = FileResponse(open(manifest.model_dir / entry.name, "rb"), content_type="application/octet-stream")  # noqa: SIM115
        response["Cache-Control"] = "public, max-age=31536000, immutable"
        response["ETag"] = f'"{entry.sha256}"'
        return response
