"""API conventions shared by every app: one error format, capped pagination.

Every 4xx from ``/api/`` has the body::

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"name": ["..."]}}}

``fields`` is present only for validation errors of named fields.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotations.io import ImageReadError

from .errors import DomainError


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


def exception_handler(exc, context):
    """DRF exception handler: domain errors, DRF errors and Django errors in one shape."""
    if isinstance(exc, DomainError):
        body = error_body(exc.status, exc.code, exc.message, exc.fields)
        return Response(body, status=exc.status, headers=exc.headers)
    if isinstance(exc, ImageReadError):
        return Response(error_body(400, "unreadable_image", str(exc)), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        response.data = error_body(response.status_code, "invalid", _first_message(detail), fields)
    else:
        message = str(getattr(exc, "detail", exc))
        response.data = error_body(response.status_code, code if isinstance(code, str) else "error", message)
    return response


class CappedPagination(PageNumberPagination):
    """``?page=N&page_size=M``; M is capped so no client can ask for a whole table."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


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


__all__ = ["CappedPagination", "error_body", "exception_handler", "json_error_view"]
