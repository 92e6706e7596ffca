"""Fixtures of the integrations suites: a private redis-server (Debian package) per test module.

When ``redis-server`` is missing every test needing it skips with the reason; with
``MAILSDK_REQUIRE_REDIS=1`` (CI, after ``scripts/install-redis.sh``) that is a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests._support.redis_server import SKIP_REASON, RedisServer, find_redis, start_redis

redis = pytest.importorskip("redis", reason="the redis extra is not installed")

_REQUIRED = os.environ.get("MAILSDK_REQUIRE_REDIS", "") not in ("", "0")


def _need_redis() -> None:
    if find_redis() is None:
        if _REQUIRED:
            pytest.fail(f"MAILSDK_REQUIRE_REDIS is set but {SKIP_REASON}")
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server (own port and directory, AOF on), stopped by PID afterwards."""
    _need_redis()
    with start_redis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of :func:`redis_server` with an empty database."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5, socket_connect_timeout=5)
    client.flushdb()
    yield client
    client.close()
