"""API conventions shared by every app: one error format, capped pagination, bounded input.

Every 4xx from ``/api/`` has the body::

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"name": ["..."]}}}

``fields`` is present only for validation errors of named fields. That holds for refusals Django
makes before a view runs, too: bodies over the upload limits (413, ``ApiRequestLimitMiddleware``)
and failed CSRF checks (403, ``csrf_failure``). Outside ``/api/`` Django answers as it always does.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotations.io import ImageReadError

from .errors import DomainError

# The largest id a database key holds (BigAutoField); a larger one in a body is a 400, not a
# database error.
MAX_ID = 2**63 - 1


def error_body(status_code: int, code: str, message: str, fields: dict | None = None) -> dict:
    error: dict = {"status": status_code, "code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _first_message(detail) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_first_message(value)}"
    return str(detail)


MESSAGE_MAX_CHARS = 300


def _shortened(detail):
    """DRF's messages quote the bad value ("'...' is not a valid choice."): a refusal of a
    megabyte-long value must not send it back, so every message keeps its first characters."""
    if isinstance(detail, dict):
        return {str(key)[:MESSAGE_MAX_CHARS]: _shortened(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_shortened(item) for item in detail]
    text = str(detail)
    return text if len(text) <= MESSAGE_MAX_CHARS else text[: MESSAGE_MAX_CHARS - 1] + "…"


def _suspicious_error(exc: SuspiciousOperation) -> tuple[int, str, str]:
    """(status, code, message) for a request Django refused while reading it."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return 413, "too_large", f"the request's form fields exceed the limit of {limit} bytes"
    return 400, "bad_request", str(exc) or "bad request"


def exception_handler(exc, context):
    """DRF exception handler: domain errors, DRF errors and Django errors in one shape."""
    if isinstance(exc, DomainError):
        body = error_body(exc.status, exc.code, exc.message, exc.fields)
        return Response(body, status=exc.status, headers=exc.headers)
    if isinstance(exc, ImageReadError):
        return Response(error_body(400, "unreadable_image", str(exc)), status=400)
    if isinstance(exc, SuspiciousOperation):  # e.g. RequestDataTooBig while parsing a multipart body
        status_code, code, message = _suspicious_error(exc)
        return Response(error_body(status_code, code, message), status=status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if isinstance(exc, exceptions.ValidationError):
        detail = _shortened(exc.detail)
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        response.data = error_body(response.status_code, "invalid", _first_message(detail), fields)
    else:
        message = str(getattr(exc, "detail", exc))
        response.data = error_body(response.status_code, code if isinstance(code, str) else "error", message)
    return response


class CappedPagination(PageNumberPagination):
    """``?page=N&page_size=M``; M is capped so no client can ask for a whole table.

    A ``page`` or ``page_size`` that is not a positive integer (``null``, ``0``, ``ten``, empty)
    is a 400, not silently the default; a ``page_size`` above the cap gets the cap; a page past the
    end is a 404.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        size = _positive_int_param(request, self.page_size_query_param)
        return self.page_size if size is None else min(size, self.max_page_size)

    def get_page_number(self, request, paginator):
        _positive_int_param(request, self.page_query_param)
        return super().get_page_number(request, paginator)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page, {self.page_size} by default, at most {self.max_page_size}."
                )
        return parameters


def _positive_int_param(request, name: str) -> int | None:
    """The query parameter ``name`` as a positive integer, None when absent; a 400 otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise exceptions.ValidationError({name: [f"must be a positive integer, not {raw!r}"]})
    return int(raw)


class MaxJSONBytes:
    """Validator: the value, encoded as compact JSON, is at most ``limit`` bytes.

    For the free JSON fields a client sends (``JSONField``, ``DictField``), whose size nothing
    else bounds. The message gives the limit, never the value.
    """

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, value) -> None:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.limit:
            raise serializers.ValidationError(f"at most {self.limit} bytes of JSON, got {size}")

    def __eq__(self, other) -> bool:
        return isinstance(other, MaxJSONBytes) and other.limit == self.limit


def api_not_found(request, *args, **kwargs):
    return JsonResponse(error_body(404, "not_found", f"no API endpoint at {request.path}"), status=404)


def json_error_view(status_code: int, code: str, message: str):
    """A Django error handler (404, 403, 400, 500) that answers API paths in the API's format."""

    def view(request, exception=None):
        if request.path.startswith("/api/"):
            return JsonResponse(error_body(status_code, code, message), status=status_code)
        from django.views import defaults

        handlers = {
            400: defaults.bad_request,
            403: defaults.permission_denied,
            404: defaults.page_not_found,
        }
        if status_code in handlers:
            return handlers[status_code](request, exception)
        return defaults.server_error(request)

    return view


# JSON types the serializer fields promise in the schema, checked before DRF's conversions.
_JSON_TYPES: list[tuple[type, tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.UUIDField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string"),
]


def _json_type_error(field, value) -> str | None:
    """Why ``value`` (parsed JSON) is not of the JSON type ``field`` is documented with, or None."""
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.Serializer):
        if not isinstance(value, dict):
            return None  # the serializer says "expected a dictionary"
        for name, child in field.fields.items():
            if name in value and (error := _json_type_error(child, value[name])):
                return f"{name}: {error}"
        return None
    if isinstance(field, serializers.ListField | serializers.DictField) and isinstance(value, list | dict):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if error := _json_type_error(field.child, item):
                return f"item {key}: {error}"
        return None
    for field_class, types, name in _JSON_TYPES:
        if isinstance(field, field_class):
            if isinstance(value, bool) and bool not in types or not isinstance(value, types):
                return f"must be {name}"
            return None
    return None


class StrictJSON:
    """Request serializer mixin: in a JSON body every value has the JSON type the schema gives it.

    DRF converts leniently (``5`` is taken for ``"5"``, ``"5"`` and ``false`` for numbers); a JSON
    client gets a 400 naming the field instead. Forms, whose values are all strings, keep DRF's
    conversions.
    """

    def to_internal_value(self, data):
        if type(data) is dict:  # a JSON object; forms arrive as QueryDicts
            errors = {
                name: [error]
                for name, field in self.fields.items()
                if name in data and not field.read_only and (error := _json_type_error(field, data[name]))
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class ExactlyOneOf:
    """Serializer mixin: exactly one of the fields named in ``exactly_one_of`` must be sent.

    The one declaration drives both the validation and the OpenAPI schema (``oneOf`` of
    ``required``, see ``crowdseg.schema``).
    """

    exactly_one_of: tuple[str, ...] = ()

    def validate(self, attrs):
        if sum(name in attrs for name in self.exactly_one_of) != 1:
            names = " or ".join(repr(name) for name in self.exactly_one_of)
            raise serializers.ValidationError(f"send exactly one of {names}")
        return super().validate(attrs)


def csrf_failure(request, reason: str = ""):
    """``CSRF_FAILURE_VIEW``: a 403 in the error format under ``/api/``, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        message = f"CSRF check failed: {reason}" if reason else "CSRF check failed"
        return JsonResponse(error_body(403, "csrf_failed", message), status=403)
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)


class ApiRequestLimitMiddleware:
    """Under ``/api/``: refuse a body over the limits from its Content-Length, before anything
    (CSRF middleware, a parser) reads it, and answer Django's own refusals in the error format.

    The limits: ``CROWDSEG_MAX_UPLOAD_BYTES`` for multipart uploads, ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    for every other body (DRF's JSON parser reads the stream without Django's check). Both are
    413 ``too_large``. Outside ``/api/`` nothing changes. Goes before ``CsrfViewMiddleware``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    def process_exception(self, request, exception):
        # Views that are not DRF's (DRF's exception handler covers its own).
        if request.path.startswith("/api/") and isinstance(exception, SuspiciousOperation):
            status_code, code, message = _suspicious_error(exception)
            return JsonResponse(error_body(status_code, code, message), status=status_code)
        return None

    @staticmethod
    def _refusal(request) -> JsonResponse | None:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        if not raw.isascii() or not raw.isdigit():
            return JsonResponse(error_body(400, "bad_request", f"Content-Length {raw!r} is not a number"), status=400)
        length = int(raw)
        multipart = request.META.get("CONTENT_TYPE", "").lower().startswith("multipart/")
        limit = settings.CROWDSEG_MAX_UPLOAD_BYTES if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            message = f"request of {length} bytes exceeds the upload limit of {limit} bytes"
            return JsonResponse(error_body(413, "too_large", message), status=413)
        return None


__all__ = [
    "MAX_ID",
    "ApiRequestLimitMiddleware",
    "CappedPagination",
    "ExactlyOneOf",
    "MaxJSONBytes",
    "StrictJSON",
    "csrf_failure",
    "error_body",
    "exception_handler",
    "json_error_view",
]
