"""Fixtures of the integrations suites: a private redis-server (Debian package) per test module.

When ``redis-server`` is missing every test needing it skips with the reason; with
``MAILSDK_REQUIRE_REDIS=1`` (CI, after ``scripts/install-redis.sh``) that is a failure instead.
"""

from __future__ import annotations

import contextlib
import os
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._support.celery_workers import Worker
from tests._support.mta import MtaEnvironment, find_missing, start_mta
from tests._support.redis_server import SKIP_REASON, RedisServer, find_redis, start_redis
from tests._support.tcp_relay import CountingRelay

ROOT = Path(__file__).resolve().parents[2]


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
def redis_client(redis_server: RedisServer) -> Iterator[typing.Any]:
    """A client of :func:`redis_server` with an empty database."""
    redis = pytest.importorskip("redis", reason="the redis extra is not installed")
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5, socket_connect_timeout=5)
    client.flushdb()
    yield client
    client.close()


# -- the real Postfix and real Celery workers ------------------------------------------------------

_REQUIRE_MTA = os.environ.get("MAILSDK_REQUIRE_MTA", "") not in ("", "0")


@pytest.fixture(scope="session")
def integration_mta() -> Iterator[MtaEnvironment]:
    """The real-MTA suite's private Postfix (+ Dovecot), for the Celery end-to-end tests."""
    reason = find_missing()
    if reason is not None:
        if _REQUIRE_MTA:
            pytest.fail(f"MAILSDK_REQUIRE_MTA is set but {reason}")
        pytest.skip(reason)
    with start_mta() as env:
        yield env


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of this test only (broker, results, limits and ledger)."""
    _need_redis()
    with start_redis() as server:
        yield server


class Cluster:
    """Running Celery workers plus the producer-side app and the counting relay."""

    def __init__(self, redis_server: RedisServer, relay: CountingRelay, log_dir: Path) -> None:
        from celery import Celery

        from mailsdk.integrations.celery import install

        self.redis = redis_server
        self.relay = relay
        self.log_dir = log_dir
        self.workers: list[Worker] = []
        self.app = Celery("mailsdk_test", broker=redis_server.url, backend=redis_server.url)
        self.app.conf.update(
            task_serializer="json", result_serializer="json", accept_content=["json"]
        )
        self.tasks = install(self.app)

    def start(
        self, count: int = 2, *, concurrency: int = 2, pool: str = "prefork", **settings: str
    ) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            "MAILSDK_TEST_ROOT": str(ROOT),
            "MAILSDK_TEST_REDIS_URL": self.redis.url,
            "MAILSDK_TEST_SMTP_HOST": "127.0.0.1",
            "MAILSDK_TEST_SMTP_PORT": str(self.relay.port),
            "LANG": "C.UTF-8",
            **{f"MAILSDK_TEST_{k.upper()}": v for k, v in settings.items()},
        }
        new = [
            Worker(
                "tests.integrations.celery_app",
                f"w{len(self.workers) + n}",
                self.log_dir,
                env,
                concurrency=concurrency,
                pool=pool,
            )
            for n in range(count)
        ]
        self.workers.extend(new)
        for worker in new:
            worker.wait_ready()

    def logs(self) -> str:
        return "\n".join(f"== {w.name}\n{w.text()[-3000:]}" for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.app.close()


@contextlib.contextmanager
def _cluster(mta: MtaEnvironment, server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    pytest.importorskip("celery", reason="the celery extra is not installed")
    relay = CountingRelay(mta.host, mta.smtp_port)
    cluster = Cluster(server, relay, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()
        relay.close()


@pytest.fixture
def cluster(
    integration_mta: MtaEnvironment, fresh_redis: RedisServer, tmp_path: Path
) -> Iterator[Cluster]:
    """Celery workers (started by the test with :meth:`Cluster.start`) in front of Postfix."""
    with _cluster(integration_mta, fresh_redis, tmp_path) as cluster:
        yield cluster


#: The Redis password of :func:`secure_cluster` (tests assert it never shows up anywhere).
REDIS_PASSWORD = "redis-Secr3t-pw-9f2"


@pytest.fixture
def secure_cluster(integration_mta: MtaEnvironment, tmp_path: Path) -> Iterator[Cluster]:
    """Like :func:`cluster`, with a password-protected Redis (``requirepass``)."""
    _need_redis()
    with (
        start_redis(password=REDIS_PASSWORD) as server,
        _cluster(integration_mta, server, tmp_path) as cluster,
    ):
        yield cluster
