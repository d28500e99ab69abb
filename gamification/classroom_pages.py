"""Server-rendered page a class's join link and login cards' QR codes open: ``/join/<code>``."""

from __future__ import annotations

from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from accounts.models import Role


@ensure_csrf_cookie
def class_join_page(request, code: str):
    """A form to join the class with ``code``: a signed-in pupil joins as themselves; anyone else
    signs in with their login card (``?u=`` fills in the username) or joins as a new pupil. The
    page itself looks nothing up (the same page for any code); joining goes through
    ``POST /api/v1/classes/join``, with its answers and rate limits."""
    user = request.user
    pupil = user if user.is_authenticated and user.role == Role.PUPIL else None
    context = {
        "code": code[:16],
        "username": request.GET.get("u", "")[:150],
        "pupil": pupil,
        "join_api": reverse("class-join"),
    }
    return render(request, "gamification/class_join.html", context)
