"""The game's WebSocket: one per open client, authenticated like the API.

Messages are JSON objects with a ``type``. Today a client can ask for suggestions here instead of
over HTTP (``{"type": "suggest", "id": "c1", "task": "<uuid>", "box": [x0, y0, x1, y1]}`` ->
``{"type": "suggestion", "id": "c1", ...same fields as the REST answer}``); the game loop adds its
live events (``crowdseg.events``) to the same socket, and ``round.expiring`` a minute before
one of the player's rounds runs out. Live sessions (``gamification.live_sessions``) come here too:
a pupil sends ``live.join`` with the session's code, then ``live.submit`` for each round; the
teacher's screen ``live.watch`` and ``live.control``, answered ``{"type": "live.state", "id": ...,
"state": <the REST state>}``; the socket then hears the session's ``live.*`` events. Errors use
the API's error body: ``{"type": "error", "id": ..., "error": {"status": 400, "code": ...,
"message": ...}}``. The consumer only relays: every answer
comes from the same service as the REST endpoint, and every event is also readable over REST.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from annotations import selectors
from crowdseg import events
from crowdseg.api import error_body
from crowdseg.errors import DomainError
from crowdseg.ws_auth import PROTOCOL
from gamification import live_sessions
from gamification.api import live_sessions as live_api
from gamification.api.serializers import SubmissionSerializer
from gamification.models import Round
from inference import services
from inference.api.serializers import PromptSerializer, suggestion_data

MAX_MESSAGE_BYTES = 16 * 1024
SUGGESTIONS_PER_SECOND = 20  # per connection; a dragging finger sends a few per second at most
EXPIRY_WARNING_S = 60


class PlayConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self._tokens, self._refilled = float(SUGGESTIONS_PER_SECOND), time.monotonic()
        self._expiry_timers: dict[str, asyncio.TimerHandle] = {}
        self._group = events.player_group(user.pk)
        self._live_groups: set[str] = set()  # live sessions this socket follows
        await self.channel_layer.group_add(self._group, self.channel_name)
        # A browser that sent its token as a subprotocol (crowdseg.ws_auth) must get one back.
        await self.accept(subprotocol=PROTOCOL if PROTOCOL in self.scope.get("subprotocols", []) else None)
        for round_id, expires_at in await self._open_rounds(user):
            self._expiry_watch(round_id, expires_at)

    async def disconnect(self, code):
        for timer in getattr(self, "_expiry_timers", {}).values():
            timer.cancel()
        if hasattr(self, "_group"):
            await self.channel_layer.group_discard(self._group, self.channel_name)
        for group in list(getattr(self, "_live_groups", ())):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def game_event(self, message):
        """An event a service published for this player (``crowdseg.events.publish``)."""
        event = message["event"]
        if event["type"] == "round.started":
            self._expiry_watch(event["round"], datetime.fromisoformat(event["expires_at"]))
        elif event["type"] in ("round.completed", "round.settled"):
            timer = self._expiry_timers.pop(event["round"], None)
            if timer:
                timer.cancel()
        elif event["type"] == "live.kicked":
            await self._live_leave(event["session"])
        await self.send_json(event)

    def _expiry_watch(self, round_id: str, expires_at: datetime) -> None:
        """Send ``round.expiring`` EXPIRY_WARNING_S before the round ends (at once if closer)."""
        if round_id in self._expiry_timers:
            return
        left = (expires_at - datetime.now(expires_at.tzinfo)).total_seconds()
        if left <= 0:
            return
        delay = max(0.0, left - EXPIRY_WARNING_S)
        event = {"type": "round.expiring", "round": round_id, "expires_at": expires_at.isoformat()}
        loop = asyncio.get_running_loop()
        self._expiry_timers[round_id] = loop.call_later(delay, lambda: asyncio.ensure_future(self._expiring(event)))

    async def _expiring(self, event: dict) -> None:
        self._expiry_timers.pop(event["round"], None)
        left = datetime.fromisoformat(event["expires_at"]) - datetime.now(
            datetime.fromisoformat(event["expires_at"]).tzinfo
        )
        await self.send_json({**event, "seconds_left": max(0, round(left.total_seconds()))})

    @database_sync_to_async
    def _open_rounds(self, user) -> list[tuple[str, datetime]]:
        rounds = Round.objects.filter(player=user, completed_at__isnull=True, expires_at__gt=timezone.now())
        return [(str(r.id), r.expires_at) for r in rounds.order_by("expires_at")[:20]]

    def _allow(self) -> bool:
        """Token bucket: SUGGESTIONS_PER_SECOND, bursts up to the same number."""
        now = time.monotonic()
        self._tokens = min(SUGGESTIONS_PER_SECOND, self._tokens + (now - self._refilled) * SUGGESTIONS_PER_SECOND)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if bytes_data is not None or text_data is None or len(text_data) > MAX_MESSAGE_BYTES:
            await self.send_json({"type": "error", "id": None, **error_body(400, "invalid", "send JSON text frames")})
            return
        try:
            await super().receive(text_data=text_data, **kwargs)
        except ValueError:
            await self.send_json({"type": "error", "id": None, **error_body(400, "invalid", "malformed JSON")})

    # What a client may send: its ``type`` -> (the method that answers, the type of the answer).
    # The authorisation tests send every one of them as every kind of user.
    MESSAGES = {
        "suggest": ("_suggest", "suggestion"),
        # Live sessions (``gamification.live_sessions``); each is also a REST call.
        "live.join": ("_live_join", "live.state"),
        "live.watch": ("_live_watch", "live.state"),
        "live.control": ("_live_control", "live.state"),
        "live.submit": ("_live_submit", "live.submitted"),
    }

    async def receive_json(self, content, **kwargs):
        request_id = content.get("id") if isinstance(content, dict) else None
        handler = self.MESSAGES.get(content.get("type")) if isinstance(content, dict) else None
        if handler is None:
            await self.send_json({"type": "error", "id": request_id, **error_body(400, "invalid", "unknown type")})
            return
        if not self._allow():
            body = error_body(429, "throttled", f"at most {SUGGESTIONS_PER_SECOND} suggestions a second")
            await self.send_json({"type": "error", "id": request_id, **body})
            return
        method, answer_type = handler
        try:
            answer = await getattr(self, method)(content)
        except DomainError as exc:
            body = error_body(exc.status, exc.code, exc.message, exc.fields)
            await self.send_json({"type": "error", "id": request_id, **body, **_retry(exc)})
            return
        await self.send_json({"type": answer_type, "id": request_id, **answer})

    @database_sync_to_async
    def _suggest(self, content: dict) -> dict:
        params = PromptSerializer(data=content)
        if not params.is_valid():
            raise DomainError("invalid prompt", code="invalid", fields=params.errors)
        try:
            task_id = uuid.UUID(str(content.get("task")))
        except ValueError:
            raise DomainError("task must be a task id", code="invalid", fields={"task": ["not a task id"]}) from None
        task = selectors.task_get_for_suggestions(user=self.scope["user"], task_id=task_id)
        return suggestion_data(services.suggestion_make(task=task, **params.validated_data))

    # -- live sessions: the socket joins the session's groups; the services announce the rest ---

    # Joining and watching follow the session's groups *before* reading its state: an event sent
    # in between (the teacher starting the round as a phone joins, a pupil joining as the
    # projector opens) is then in the state, or heard, or both; never lost to this screen.

    async def _live_join(self, content: dict) -> dict:
        """A pupil joins (or rejoins) with the session's code: ``{"code": "123456"}``."""
        session_id = await self._live_join_session(content.get("code"))
        await self._live_follow(events.session_group(session_id))
        return {"state": await database_sync_to_async(live_api.session_state_for)(self.scope["user"], session_id)}

    @database_sync_to_async
    def _live_join_session(self, code) -> str:
        if not isinstance(code, str):
            raise DomainError("code must be the session's 6 digits", fields={"code": ["required"]})
        session, _ = live_sessions.live_session_join(pupil=self.scope["user"], code=code)
        return str(session.pk)

    async def _live_watch(self, content: dict) -> dict:
        """The teacher's screen or a pupil's reconnected phone follows a session: ``{"session": id}``."""
        session_id = _session_id(content)
        read = database_sync_to_async(live_api.session_state_for)
        teachers = "code" in await read(self.scope["user"], session_id)  # NotFound for anyone else
        await self._live_follow(events.session_group(session_id))
        if teachers:  # the teacher's view: who joins and leaves too
            await self._live_follow(events.staff_group(session_id))
        return {"state": await read(self.scope["user"], session_id)}

    async def _live_control(self, content: dict) -> dict:
        """The teacher's buttons: ``{"session": id, "action": "start", "participant": 12}``."""
        return await database_sync_to_async(self._live_control_sync)(content)

    def _live_control_sync(self, content: dict) -> dict:
        session = live_sessions.live_session_get_for_teacher(user=self.scope["user"], session_id=_session_id(content))
        control = {k: v for k, v in content.items() if k in ("action", "participant")}
        params = live_api.LiveControlSerializer(data=control)
        if not params.is_valid():
            raise DomainError("invalid control", fields=params.errors)
        session = live_sessions.live_session_control(
            session=session,
            action=params.validated_data["action"],
            participant_id=params.validated_data.get("participant"),
        )
        return {"state": live_api.teacher_state(session)}

    @database_sync_to_async
    def _live_submit(self, content: dict) -> dict:
        """A pupil's answer: ``{"session": id, "round": 3, "idempotency_key": ..., "rle": ..., ...}``
        (the REST submit's body); answered like the REST submit."""
        session_id, number = _session_id(content), content.get("round")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise DomainError("round must be the round's number", fields={"round": ["a positive integer"]})
        body = {k: v for k, v in content.items() if k not in ("type", "id", "session", "round", "idempotency_key")}
        params = SubmissionSerializer(data=body)
        if not params.is_valid():
            raise DomainError("invalid submission", fields=params.errors)
        outcome = live_sessions.live_answer_submit(
            pupil=self.scope["user"],
            session_id=session_id,
            number=number,
            data=dict(params.validated_data),
            idempotency_key=content.get("idempotency_key"),
        )
        return {"status": outcome.status, "replayed": outcome.replayed, "body": outcome.body}

    async def _live_follow(self, group: str) -> None:
        if group not in self._live_groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self._live_groups.add(group)

    async def _live_leave(self, session_id: str) -> None:
        for group in (events.session_group(session_id), events.staff_group(session_id)):
            if group in self._live_groups:
                await self.channel_layer.group_discard(group, self.channel_name)
                self._live_groups.discard(group)


def _session_id(content: dict) -> uuid.UUID:
    try:
        return uuid.UUID(str(content.get("session")))
    except ValueError:
        raise DomainError("session must be a session id", fields={"session": ["not a session id"]}) from None


def _retry(exc: DomainError) -> dict:
    retry_after = exc.headers.get("Retry-After")
    return {"retry_after": int(retry_after)} if retry_after else {}
