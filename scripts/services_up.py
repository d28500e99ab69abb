"""Exit 0 when the PostgreSQL and Redis URLs given answer, 1 (with the reason) otherwise."""

import sys

import psycopg
import redis


def main(pg_url: str, redis_url: str) -> int:
    try:
        # Connect to the server's own database: the test database is created by the suite.
        with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        print(f"unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
