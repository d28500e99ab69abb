"""Is every part of the stack answering? Staff-only: the deep check enqueues real work."""

from __future__ import annotations

import secrets
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # every failure is a finding, not a crash
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return connection.vendor


def _cache() -> str:
    key, value = f"health:{secrets.token_hex(4)}", secrets.token_hex(4)
    cache.set(key, value, 10)
    if cache.get(key) != value:
        raise RuntimeError("value written to the cache did not come back")
    cache.delete(key)
    return settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]


def _channel_layer() -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "health.ping"})
    message = async_to_sync(layer.receive)(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError(f"channel layer returned {message!r}")
    return type(layer).__name__


def _celery() -> str:
    from .tasks import health_echo

    token = secrets.token_hex(4)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        assert health_echo.delay(token).get() == token
        return "in-process"
    if health_echo.delay(token).get(timeout=5) != token:
        raise RuntimeError("a worker answered with the wrong token")
    return "worker"


def liveness(request):
    """For load balancers: the process answers. Touches nothing else."""
    return JsonResponse({"ok": True})


class IsOperator(BasePermission):
    """Staff (the role that runs the service) and superusers; researchers are not operators."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_operator)


class HealthView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request):
        checks = {
            "database": _timed(_database),
            "cache": _timed(_cache),
            "channel_layer": _timed(_channel_layer),
            "celery": _timed(_celery),
        }
        healthy = all(c["ok"] for c in checks.values())
        return Response({"ok": healthy, "checks": checks}, status=200 if healthy else 503)
