import re

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gamification.classroom_pages import class_join_page
from gamification.pages import live_projector

from . import media, play
from .api import api_not_found, json_error_view
from .health import HealthView, liveness

api_v1 = [
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("health", HealthView.as_view(), name="health"),
    path("", include("accounts.api.urls")),
    path("", include("annotations.api.urls")),
    path("", include("inference.api.urls")),
    path("", include("gamification.api.urls")),
    path("", include("synthesis.api.urls")),
    # Last: unknown API paths answer in the API's error format, DEBUG or not.
    re_path(r"^.*$", api_not_found),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_allauth/", include("allauth.headless.urls")),
    path("api/v1/", include(api_v1)),
    path("healthz", liveness, name="liveness"),
    path("play/", play.play, name="play"),
    path("play/sw.js", play.service_worker, name="play-service-worker"),
    path("live/<uuid:session_id>/projector", live_projector, name="live-projector"),
    path("join/<str:code>", class_join_page, name="class-join-page"),  # class join links and login cards' QR codes
]

if settings.CROWDSEG_SERVE_MEDIA:
    # Display images of medical data, only to those who may see them (404 to everyone else).
    urlpatterns.append(
        re_path(rf"^{re.escape(settings.MEDIA_URL.lstrip('/'))}(?P<name>.+)$", media.display_file, name="media")
    )

handler400 = json_error_view(400, "bad_request", "bad request")
handler403 = json_error_view(403, "forbidden", "you may not do this")
handler404 = json_error_view(404, "not_found", "no such resource")
handler500 = json_error_view(500, "server_error", "the server failed; the error was logged")
