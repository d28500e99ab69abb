"""Django's Redis cache shares one connection pool per process (crowdseg.cache)."""

from __future__ import annotations

import threading

import pytest
from django.core.cache.backends.redis import RedisCache

from crowdseg.cache import ProcessConnectionPool
from tests.conftest import REAL_STACK

OPTIONS = {"pool_class": "crowdseg.cache.ProcessConnectionPool", "max_connections": 1000}


def pool_of(cache: RedisCache):
    return cache._cache._get_connection_pool(write=True)


def test_cache_objects_of_different_requests_share_one_pool():
    """Django makes a cache object per request context; no connection is opened to compare."""
    caches = []

    def make():
        caches.append(RedisCache("redis://127.0.0.1:6379/14", {"OPTIONS": OPTIONS}))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pools = {id(pool_of(c)) for c in caches}
    assert len(pools) == 1 and isinstance(pool_of(caches[0]), ProcessConnectionPool)
    assert pool_of(caches[0]).max_connections == 1000
    other_db = RedisCache("redis://127.0.0.1:6379/13", {"OPTIONS": OPTIONS})
    assert pool_of(other_db) is not pool_of(caches[0])
    plain = RedisCache("redis://127.0.0.1:6379/14", {})
    assert pool_of(plain) is not pool_of(caches[0])  # Django's own pool class: one per object


@pytest.mark.real_stack
@pytest.mark.skipif(not REAL_STACK, reason="needs Redis (scripts/test runs this)")
def test_requests_reuse_the_process_redis_connections(settings):
    from django.core.cache import caches

    first, second = (RedisCache(settings.CACHES["default"]["LOCATION"], settings.CACHES["default"]) for _ in range(2))
    assert isinstance(pool_of(caches["default"]), ProcessConnectionPool)
    first.set("crowdseg-pool-check", 1, 30)
    assert second.get("crowdseg-pool-check") == 1
    pool = pool_of(first)
    created = len(pool._available_connections) + len(pool._in_use_connections)
    for _ in range(20):
        second.get("crowdseg-pool-check")
    assert len(pool._available_connections) + len(pool._in_use_connections) == created
