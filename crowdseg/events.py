"""Live events: services announce them, the user's open sockets (``ws/v1/play``) receive them.

Events are notifications only: everything they say is also readable over REST, so a dropped
message (a closed app, a flaky network) loses nothing. They are sent after the transaction that
caused them commits, to the player's group on the channel layer (Redis in production, in-memory in
the embedded default, where only sockets of the same process hear them).

Types: the game's ``score.settled``, ``badge.earned``, ``leaderboard.changed``, ``round.started``,
``round.completed``, ``round.settled``, ``checks.reported`` (accuracy on gold checks over a block of
rounds; the socket itself adds ``round.expiring`` a minute before a round's time is up; no event
ever says whether a task was a gold check, nor is computed differently for one), and the researcher's
``job.progress`` for synthesis and validation jobs and ``export.progress`` for their exports (to the
researcher who asked for the export only), and the live sessions' ``live.*`` events
(``gamification.live_sessions``), sent to a session's group rather than to one player.
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger(__name__)


def player_group(player_id: int) -> str:
    return f"player.{player_id}"


def session_group(session_id) -> str:
    """Every socket in a live session: its pupils', the teacher's and the projector's."""
    return f"live.{session_id}"


def staff_group(session_id) -> str:
    """The teacher's and the projector's sockets of a live session (who joined, who left)."""
    return f"live.{session_id}.staff"


def publish(player_id: int, event_type: str, payload: dict) -> None:
    """Send ``{"type": event_type, **payload}`` to the player's sockets once the transaction commits."""
    publish_group(player_group(player_id), event_type, payload)


def publish_group(group: str, event_type: str, payload: dict) -> None:
    """Send ``{"type": event_type, **payload}`` to a group's sockets once the transaction commits."""
    # Round-trip through JSON so datetimes and UUIDs travel as strings, like the REST answers.
    event = json.loads(json.dumps({"type": event_type, **payload}, cls=DjangoJSONEncoder))
    transaction.on_commit(lambda: _send(group, event))


def _send(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "game.event", "event": event})
    except Exception:  # a notification must never fail the action that caused it
        logger.exception("could not publish %s to %s", event.get("type"), group)
