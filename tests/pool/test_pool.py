"""Pool and AsyncPool in both modes: concurrent sends never share a session, the checkout
timeout, health checks after the server dropped idle connections, retirement, shared caps."""

from __future__ import annotations

import asyncio
import threading
import typing
from collections.abc import Callable

import pytest
from tests._support.faulty_smtpd import FaultyServer
from tests._support.modes import Mode, plain_builder
from tests._support.smtpd import SmtpdServer

import mailsdk
from mailsdk.batch import LocalConnectionLimiter

MSG = b"Subject: pooled\r\n\r\nbody\r\n"


def pool_of(mode: Mode, server: typing.Any, **options: typing.Any) -> typing.Any:
    return mode.build(plain_builder(server.host, server.port)).pool(**options)


async def enter(mode: Mode, pool: typing.Any) -> None:
    if mode.is_async:
        await pool.__aenter__()


async def leave(mode: Mode, pool: typing.Any) -> None:
    await mode.call(pool.aclose if mode.is_async else pool.close)


async def send_concurrently(mode: Mode, pool: typing.Any, count: int) -> list[mailsdk.SendResult]:
    """``count`` sends at once: threads in sync mode, tasks in async mode."""
    kwargs = {"sender": "s@x.test", "recipients": ["r@x.test"]}
    if mode.is_async:
        return list(await asyncio.gather(*(pool.send_message(MSG, **kwargs) for _ in range(count))))
    results: list[mailsdk.SendResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            result = pool.send_message(MSG, **kwargs)
        except BaseException as exc:  # collected and re-raised by the test
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


async def test_concurrent_sends_share_few_connections(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty()
    pool = pool_of(mode, server, max_connections=3)
    await enter(mode, pool)
    try:
        results = await send_concurrently(mode, pool, 40)
        assert len(results) == 40 and all(r.ok for r in results)
        assert 1 <= server.handler.connections <= 3  # reused, never more than the cap
        assert pool.stats()["busy"] == 0
    finally:
        await leave(mode, pool)
    assert pool.stats() == {"open": 0, "idle": 0, "busy": 0}


async def test_checkout_timeout_raises_pool_timeout(mode: Mode, smtpd: SmtpdServer) -> None:
    pool = pool_of(mode, smtpd, max_connections=1, checkout_timeout=0.2)
    await enter(mode, pool)
    try:
        if mode.is_async:
            async with pool.connection():
                with pytest.raises(mailsdk.PoolTimeout) as info:
                    await pool.send_message(MSG, sender="s@x.test", recipients=["r@x.test"])
        else:
            with pool.connection():
                box: list[BaseException] = []

                def other() -> None:
                    try:
                        pool.send_message(MSG, sender="s@x.test", recipients=["r@x.test"])
                    except BaseException as exc:  # inspected below
                        box.append(exc)

                t = threading.Thread(target=other)
                t.start()
                t.join()
            assert len(box) == 1 and isinstance(box[0], mailsdk.PoolTimeout)
            info = None
        if info is not None:
            assert isinstance(info.value, mailsdk.MailTimeout)
        # once the holder gave the connection back, sends work again
        result = await mode.call(pool.send_message, MSG, sender="s@x.test", recipients=["r@x.test"])
        assert result.ok
    finally:
        await leave(mode, pool)


async def test_idle_connections_dropped_by_the_server_are_replaced(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty()
    pool = pool_of(mode, server, max_connections=1, health_check_after=0.0)
    await enter(mode, pool)
    try:
        first = await mode.call(pool.send_message, MSG, sender="s@x.test", recipients=["a@x.test"])
        server.handler.drop_all()  # the MTA closes idle clients (lettre#743)
        await asyncio.sleep(0.1)
        second = await mode.call(pool.send_message, MSG, sender="s@x.test", recipients=["b@x.test"])
        assert first.ok and second.ok
        assert server.handler.connections == 2  # the NOOP noticed it; the message was not lost
        assert server.handler.kept_rcpt == {"a@x.test": 1, "b@x.test": 1}
    finally:
        await leave(mode, pool)


async def test_connections_retire_after_max_messages(mode: Mode, smtpd: SmtpdServer) -> None:
    pool = pool_of(mode, smtpd, max_connections=1, max_messages_per_connection=3)
    await enter(mode, pool)
    try:
        for _ in range(7):
            await mode.call(pool.send_message, MSG, sender="s@x.test", recipients=["r@x.test"])
    finally:
        await leave(mode, pool)
    verbs = smtpd.recorder.verbs
    assert verbs.count("EHLO") == 3  # 3 + 3 + 1 messages
    assert verbs.count("QUIT") == 3  # every retired connection said goodbye
    assert len(smtpd.recorder.messages) == 7


async def test_broken_session_is_not_reused(mode: Mode, smtpd: SmtpdServer) -> None:
    pool = pool_of(mode, smtpd, max_connections=1)
    await enter(mode, pool)
    try:
        if mode.is_async:
            async with pool.connection() as session:
                await session.aclose()
        else:
            with pool.connection() as session:
                session.close()
        assert pool.stats()["open"] == 0
        result = await mode.call(pool.send_message, MSG, sender="s@x.test", recipients=["r@x.test"])
        assert result.ok
    finally:
        await leave(mode, pool)


async def test_shared_connection_limiter_caps_two_pools(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty()
    cap = LocalConnectionLimiter(2)
    pools = [
        pool_of(mode, server, max_connections=4, connection_limiter=cap, idle_timeout=0.2)
        for _ in range(2)
    ]
    for p in pools:
        await enter(mode, p)
    try:
        if mode.is_async:
            results = await asyncio.gather(*(send_concurrently(mode, p, 10) for p in pools))
            sent = [r for rs in results for r in rs]
        else:
            sent = []
            for p in pools:
                sent += await send_concurrently(mode, p, 10)
        assert len(sent) == 20
        assert cap.in_use <= 2
        assert server.handler.max_open <= 2  # never more than the shared cap at once
    finally:
        for p in pools:
            await leave(mode, p)
    assert cap.in_use == 0  # every lease released on close


async def test_async_limiter_is_awaited(faulty: Callable[..., FaultyServer]) -> None:
    server = faulty()

    class AsyncCap:
        def __init__(self) -> None:
            self.inner = LocalConnectionLimiter(1)
            self.calls: list[str] = []

        async def try_acquire(self) -> str | None:
            self.calls.append("acquire")
            return self.inner.try_acquire()

        async def renew(self, lease: str) -> bool:
            self.calls.append("renew")
            return self.inner.renew(lease)

        async def release(self, lease: str) -> None:
            self.calls.append("release")
            self.inner.release(lease)

    cap = AsyncCap()
    client = plain_builder(server.host, server.port).build_async()
    async with client.pool(connection_limiter=cap) as pool:
        await asyncio.gather(*(pool.send_message(MSG, recipients=["r@x.test"], sender="s@x.test")
                               for _ in range(5)))  # fmt: skip
    assert cap.calls[0] == "acquire" and cap.calls[-1] == "release"
    assert server.handler.connections == 1


async def test_closed_pool_refuses_sends(mode: Mode, smtpd: SmtpdServer) -> None:
    pool = pool_of(mode, smtpd)
    await enter(mode, pool)
    await leave(mode, pool)
    assert pool.closed
    with pytest.raises(mailsdk.MailError, match="closed"):
        await mode.call(pool.send_message, MSG, sender="s@x.test", recipients=["r@x.test"])


async def test_expired_shared_lease_retires_the_connection(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty()

    class Expiring(LocalConnectionLimiter):
        """A shared cap whose leases always expired by the time they are renewed."""

        def renew(self, lease: str) -> bool:
            return False

    cap = Expiring(1)
    pool = pool_of(mode, server, max_connections=1, connection_limiter=cap)
    await enter(mode, pool)
    try:
        for i in range(3):
            result = await mode.call(
                pool.send_message, MSG, sender="s@x.test", recipients=[f"r{i}@x.test"]
            )
            assert result.ok
    finally:
        await leave(mode, pool)
    assert server.handler.connections == 3  # never reused without a live lease
    assert cap.in_use == 0
