"""Which engine the workers of ``Pool.send_batch(processes=N)`` run, and that both keep the
process batch's guarantees.

An ordinary configuration runs each worker's batch on an asyncio pool (one thread sends on every
connection); what the asyncio client would not run identically keeps the threaded pool
(``mailsdk.pool._async_worker.threads_needed``). The guarantees under a stop, a killed worker
and server throttling are tested for both engines in ``test_process_batch.py``.
"""

from __future__ import annotations

import os
import socket
import time
import typing
from collections.abc import Callable, Iterator

import attrs
import pytest
from tests._support.engines import ENGINES, builder_for, item, one_each
from tests._support.faulty_smtpd import FaultyServer
from tests._support.modes import plain_builder

from mailsdk import Client, DeliveryStatus, Outgoing
from mailsdk.auth import StaticTokenProvider
from mailsdk.batch import LocalConnectionLimiter, RetryPolicy, TokenBucket
from mailsdk.config import AuthSettings, Endpoint
from mailsdk.pool import Pool, ProcessBatchRun
from mailsdk.pool._async_worker import threads_needed
from mailsdk.transport import TcpConnector

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


# -- the predicate ------------------------------------------------------------------------------


class _SharedLimiter:
    """A limiter shared across processes (as the Redis one): its calls may do network I/O."""

    shared_across_processes = True

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        return 0.0

    def penalize(self, seconds: float) -> None:
        return None


class _SharedCap:
    """A connection cap shared across processes (as the Redis one)."""

    def try_acquire(self) -> str | None:
        return "lease"

    def release(self, lease: str) -> None:
        return None


class _MyClient(Client):
    pass


class _MyPool(Pool):
    pass


def _client() -> Client:
    return plain_builder("127.0.0.1", 2525).build()


def test_an_ordinary_configuration_runs_the_asyncio_engine() -> None:
    client = _client()
    assert threads_needed(client.pool(), None) is None
    assert threads_needed(client.pool(), TokenBucket(messages_per_second=10)) is None
    capped = client.pool(connection_limiter=LocalConnectionLimiter(2))
    assert threads_needed(capped, None) is None
    # A blocking token provider is called in a thread by the asyncio client: no reason.
    oauth = Client(
        attrs.evolve(
            client.config,
            auth=AuthSettings(
                username="me", token_provider=StaticTokenProvider("t"), allow_plaintext=True
            ),
        )
    )
    assert threads_needed(oauth.pool(), None) is None


def test_what_the_asyncio_client_would_not_run_identically_keeps_the_threads() -> None:
    client = _client()
    config = client.config
    connector = Client(attrs.evolve(config, connector=TcpConnector("127.0.0.1", 2525)))
    assert "connector" in str(threads_needed(connector.pool(), None))
    with socket.socket() as sock:
        supplied = Client(attrs.evolve(config, endpoint=Endpoint(sock=sock)))
        assert "socket" in str(threads_needed(supplied.pool(), None))
    assert "_MyClient" in str(threads_needed(_MyClient(config).pool(), None))
    assert "_MyPool" in str(threads_needed(_MyPool(client), None))
    assert "_SharedLimiter" in str(threads_needed(client.pool(), _SharedLimiter()))
    capped = client.pool(connection_limiter=_SharedCap())
    assert "_SharedCap" in str(threads_needed(capped, None))


# -- the engine the workers run ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_the_workers_run_the_engine_the_configuration_allows(
    faulty: Callable[..., FaultyServer], engines: Callable[[], list[str]], engine: str
) -> None:
    server = faulty({11: "rcpt4xx", 12: "perm"})
    client = builder_for(engine, server.host, server.port).build()
    with client.pool(max_connections=4, max_messages_per_connection=50) as pool:
        run = pool.send_batch([item(i) for i in range(400)], processes=2)
        assert isinstance(run, ProcessBatchRun)
        assert run.engine == engine
        assert (run.threads_because is None) == (engine == "asyncio")
        seen = one_each(list(run), 400)
    assert engines() == [engine, engine]  # what the worker processes themselves ran
    assert seen[11].status is DeliveryStatus.ACCEPTED and seen[11].attempts == 2  # retried
    assert seen[12].status is DeliveryStatus.REFUSED
    accepted = [i for i, o in seen.items() if o.status is DeliveryStatus.ACCEPTED]
    assert len(accepted) == 399
    assert all(server.handler.kept[i] == 1 for i in accepted)
    assert server.handler.max_open <= 4
    assert not run.report.cancelled


def test_a_slow_input_starves_the_asyncio_workers_without_losing_or_repeating_anything(
    faulty: Callable[..., FaultyServer], engines: Callable[[], list[str]]
) -> None:
    # The parent reads this input slowly, so the workers' buffers run dry and their feeds wait
    # for the parent's answer on the event loop (the bounded wait of _Feed.__iter__): every
    # item still gets one outcome, and the batch ends when the input does.
    server = faulty()
    client = plain_builder(server.host, server.port).build()

    def slow() -> Iterator[Outgoing]:
        for i in range(40):
            if i % 8 == 0:
                time.sleep(0.05)
            yield item(i)

    with client.pool(max_connections=2) as pool:
        seen = one_each(list(pool.send_batch(slow(), processes=2)), 40)
    assert engines() == ["asyncio", "asyncio"]
    assert all(o.status is DeliveryStatus.ACCEPTED for o in seen.values())
    assert all(server.handler.kept[i] == 1 for i in range(40))


def test_an_lmtp_pool_runs_lmtp_in_the_asyncio_workers(
    smtpd_factory: Callable[..., typing.Any], engines: Callable[[], list[str]]
) -> None:
    # An LMTPClient's configuration says LMTP, so the workers' AsyncClient speaks it too: one
    # reply per recipient after the data, and only the recipient that failed is retried.
    server = smtpd_factory(lmtp=True, lmtp_fail=["full@x.test"])
    client = plain_builder(server.host, server.port).with_lmtp().build()
    items = [
        Outgoing(f"Subject: l{i}\r\n\r\nx\r\n".encode(), sender="s@x.test",
                 recipients=(f"ok{i}@x.test", "full@x.test"))
        for i in range(6)
    ]  # fmt: skip
    retry = RetryPolicy(attempts=2, backoff=0.01, jitter=0.0)
    with client.pool(max_connections=2) as pool:
        seen = one_each(list(pool.send_batch(items, processes=2, retry=retry)), 6)
    assert engines() == ["asyncio", "asyncio"]
    for i, outcome in seen.items():
        assert outcome.status is DeliveryStatus.PARTIAL and outcome.attempts == 2
        assert outcome.result is not None and outcome.result.accepted == (f"ok{i}@x.test",)
    delivered = sorted(
        r for m in server.recorder.messages for r in m.rcpt_tos if r != "full@x.test"
    )
    assert delivered == sorted(f"ok{i}@x.test" for i in range(6))  # each once
