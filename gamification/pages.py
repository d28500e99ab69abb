"""Server-rendered pages: the projector view of a live session, for a classroom PC's browser."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from crowdseg.errors import NotFound
from gamification import live_sessions
from gamification.api.live_sessions import teacher_state


@ensure_csrf_cookie
def live_projector(request, session_id):
    """The session on the class's big screen, with the teacher's buttons: the lobby (code, who
    joined), the running round (image, countdown, answers in), each round's results (the class's
    fused mask over the image, the expert outline on practice images, the spread, the leaderboard
    by pseudonym) and the report's download. Plain HTML and a little vanilla JS that follows the
    session over the WebSocket and polls the REST state as a fallback. Signed out: a sign-in
    form (401); anyone but the class's teacher: 404."""
    if not request.user.is_authenticated:
        return render(request, "gamification/projector_sign_in.html", status=401)
    try:
        session = live_sessions.live_session_get_for_teacher(user=request.user, session_id=session_id)
    except NotFound:
        raise Http404("no such live session") from None
    live_sessions.live_session_tick(session=session)
    session.refresh_from_db()
    context = {
        "session": session,
        "state": teacher_state(session),
        "urls": {
            "state": reverse("live-session-detail", args=[session.pk]),
            "control": reverse("live-session-control", args=[session.pk]),
            "report": reverse("live-session-report", args=[session.pk]) + "?download=csv",
            "socket": "/ws/v1/play",
        },
    }
    return render(request, "gamification/projector.html", context)
