"""Live events: services announce them, the user's open sockets (``ws/v1/play``) receive them.

Events are notifications only: everything they say is also readable over REST, so a dropped
message (a closed app, a flaky network) loses nothing. They are sent after the transaction that
caused them commits, to the player's group on the channel layer (Redis in production, in-memory in
the embedded default, where only sockets of the same process hear them). A server's database thread
hands each send to its event loop and goes on; one sender per loop keeps them in order.

Types: the game's ``score.settled``, ``badge.earned``, ``leaderboard.changed``, ``round.started``,
``round.completed``, ``round.settled``, ``checks.reported`` (accuracy on gold checks over a block of
rounds; the socket itself adds ``round.expiring`` a minute before a round's time is up; no event
ever says whether a task was a gold check, nor is computed differently for one), and the researcher's
``job.progress`` for synthesis and validation jobs and ``export.progress`` for their exports (to the
researcher who asked for the export only), and the live sessions' ``live.*`` events
(``gamification.live_sessions``), sent to a session's group rather than to one player.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref

from asgiref.sync import SyncToAsync, async_to_sync
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
    message = {"type": "game.event", "event": event}
    loop = _serving_loop()
    if loop is not None:
        # A consumer's or view's database thread (``sync_to_async``): hand the send to the server's
        # event loop and go on. Waiting for Redis here would hold the thread, and every database
        # call queued behind it on the process, for a notification nothing needs to wait for.
        loop.call_soon_threadsafe(_outbox_put, loop, layer, group, message)
        return
    try:  # a worker or a command: no event loop serves this thread, send and wait
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a notification must never fail the action that caused it
        logger.exception("could not publish %s to %s", event.get("type"), group)


def _serving_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop this thread does synchronous work for (asgiref records it in the
    threads ``sync_to_async`` runs code in), or None."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    if loop.is_closed() or not loop.is_running():
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return loop
    return None  # this thread runs a loop itself: not a database thread


# One sender per event loop, fed in publishing order, so a socket hears a session's events in the
# order the services announced them (concurrent ``group_send`` calls could overtake each other).
_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue] = weakref.WeakKeyDictionary()
_senders: set[asyncio.Task] = set()  # the running senders (a loop holds its tasks only weakly)


def _outbox_put(loop: asyncio.AbstractEventLoop, layer, group: str, message: dict) -> None:
    """In the loop's thread: queue the message for the loop's sender, starting it on first use."""
    outbox = _outboxes.get(loop)
    if outbox is None:
        outbox = _outboxes[loop] = asyncio.Queue()
        sender = loop.create_task(_outbox_send(outbox))
        _senders.add(sender)
        sender.add_done_callback(_senders.discard)
    outbox.put_nowait((layer, group, message))


async def _outbox_send(outbox: asyncio.Queue) -> None:
    while True:
        layer, group, message = await outbox.get()
        try:
            await layer.group_send(group, message)
        except Exception:  # a notification must never stop the ones after it
            logger.exception("could not publish %s to %s", message["event"].get("type"), group)
