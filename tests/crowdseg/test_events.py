"""Publishing events (``crowdseg.events``): after commit, in order, and never holding a server's
database thread while the channel layer answers."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from crowdseg import events


class SlowLayer:
    """A channel layer whose sends wait until the test lets them through."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.gate = asyncio.Event()

    async def group_send(self, group: str, message: dict) -> None:
        await self.gate.wait()
        self.sent.append((group, message["event"]["type"]))


class BrokenLayer:
    def __init__(self) -> None:
        self.calls = 0

    async def group_send(self, group: str, message: dict) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("redis went away")


@pytest.fixture
def layer(monkeypatch):
    def use(instance):
        monkeypatch.setattr(events, "get_channel_layer", lambda: instance)
        return instance

    return use


def test_a_database_thread_does_not_wait_for_the_channel_layer(layer):
    slow = layer(SlowLayer())

    def service() -> str:  # what a consumer's sync_to_async call does: publish, then answer
        for n in range(5):
            events._send(f"live.{n % 2}", {"type": f"event.{n}"})
        return threading.current_thread().name

    async def main():
        thread = await sync_to_async(service)()  # would never return if _send waited for the gate
        assert thread != threading.current_thread().name
        assert slow.sent == []
        slow.gate.set()
        for _ in range(50):
            if len(slow.sent) == 5:
                break
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert slow.sent == [(f"live.{n % 2}", f"event.{n}") for n in range(5)]  # in publishing order


def test_a_failed_send_is_logged_and_the_next_one_still_goes(layer, caplog):
    broken = layer(BrokenLayer())

    async def main():
        await sync_to_async(events._send)("live.1", {"type": "live.joined"})
        await sync_to_async(events._send)("live.1", {"type": "live.left"})
        for _ in range(50):
            if broken.calls == 2:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert broken.calls == 2
    assert "could not publish live.joined to live.1" in caplog.text


def test_without_a_serving_loop_the_send_completes_before_returning(layer):
    slow = layer(SlowLayer())
    slow.gate.set()
    events._send("player.7", {"type": "round.settled"})  # a worker or a command: no event loop here
    assert slow.sent == [("player.7", "round.settled")]
