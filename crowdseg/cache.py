"""One Redis connection pool per server process for Django's cache.

Django keeps its cache objects per request context under ASGI, and its Redis client makes a
connection pool per object: every request would open a new connection to Redis (a TCP connect,
and redis-py's handshake, which reads package metadata from disk) for its session lookup and
throttles.  Under the game-load benchmark that was about 8 % of the server's CPU.
``CACHES["default"]["OPTIONS"]["pool_class"]`` names this class, so each process opens
connections once and reuses them.  redis-py pools are thread-safe, and reset themselves in a
forked child.
"""

from __future__ import annotations

import threading

import redis


class ProcessConnectionPool(redis.ConnectionPool):
    """A ``redis.ConnectionPool`` shared by every cache object of a process with the same URL and
    options (Django calls ``from_url`` once per cache object)."""

    _shared: dict[tuple[str, str], ProcessConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs) -> ProcessConnectionPool:
        key = (url, repr(sorted(kwargs.items())))
        with cls._lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = super().from_url(url, **kwargs)
            return pool
