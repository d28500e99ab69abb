"""Display images of medical data, to the people who may see them, and to nobody else.

``Image.display`` (the default storage, under ``MEDIA_URL``) holds what phones load. Its URLs are
the plain ``/media/display/...`` the API hands out (``image.url`` in rounds, ``display_url`` in
image lists, the admin's thumbnails), and ``display_file`` answers them only for a requester who
may see that image (``display_visible_to``): a player with one of its tasks in one of their rounds,
a researcher whose datasets include it, a superuser. Everyone else, signed in or not, gets the 404
of a file that does not exist. The requester is known as on the API: by the session cookie
(browsers, the admin) or by ``X-Session-Token`` (apps send it with image requests too).

Phones stay fast: a display file's name is random and its bytes never change, so the answer may be
kept on the device for a week (``Cache-Control: private, max-age=604800, immutable``), never by a
shared cache; a round's images are fetched once.

Who sends the bytes (``CROWDSEG_MEDIA_SENDFILE``): Django itself (``""``, the embedded default, a
``FileResponse``), or, behind a web server, Django answers with the authorisation only and the
server sends the file: ``x-accel-redirect`` (nginx: ``X-Accel-Redirect:
{CROWDSEG_MEDIA_INTERNAL_URL}<name>``, an ``internal`` location aliased to ``MEDIA_ROOT``) or
``x-sendfile`` (Apache, lighttpd: the file's path). ``MEDIA_ROOT`` itself must never be served.
"""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

from allauth.headless.contrib.rest_framework.authentication import XSessionTokenAuthentication
from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from django.views.decorators.http import require_safe

from accounts.models import User
from annotations.models import Image
from annotations.selectors import datasets_for_researcher
from gamification.models import RoundTask

CACHE_CONTROL = "private, max-age=604800, immutable"


def display_visible_to(*, user: User, name: str) -> bool:
    """May ``user`` see the display image stored as ``name`` (e.g. ``display/7/<hex>.webp``)?

    Yes for a player with one of the image's tasks in one of their rounds, and for a researcher of
    its dataset (``datasets_for_researcher``: all datasets for a superuser). No for anyone else, and
    for a name that is no image's display file.
    """
    if not (user and user.is_authenticated) or not name:
        return False
    if RoundTask.objects.filter(round__player=user, task__image__display=name).exists():
        return True
    return Image.objects.filter(display=name, dataset__in=datasets_for_researcher(user=user)).exists()


def _requester(request) -> User | None:
    """The signed-in user: the session cookie, or an app's ``X-Session-Token``."""
    if request.user.is_authenticated:
        return request.user
    authenticated = XSessionTokenAuthentication().authenticate(request)  # None for a bad token
    return authenticated[0] if authenticated else None


@require_safe
def display_file(request, name: str):
    """``GET MEDIA_URL<name>``: the display image, or 404 (missing and forbidden look the same)."""
    if not display_visible_to(user=_requester(request), name=name):
        raise Http404("no such file")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    mode = settings.CROWDSEG_MEDIA_SENDFILE
    if mode == "x-accel-redirect":
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = settings.CROWDSEG_MEDIA_INTERNAL_URL + quote(name)
    elif mode == "x-sendfile":
        response = HttpResponse(content_type=content_type)
        response["X-Sendfile"] = Image._meta.get_field("display").storage.path(name)
    else:
        try:
            handle = Image._meta.get_field("display").storage.open(name, "rb")
        except FileNotFoundError:
            raise Http404("no such file") from None
        response = FileResponse(handle, content_type=content_type)  # closes the file when sent
    response["Cache-Control"] = CACHE_CONTROL
    return response
