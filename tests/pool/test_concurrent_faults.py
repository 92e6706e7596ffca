"""Many threads or tasks share one pool while the server drops connections before and after
the final dot: every call ends (no hang), a message the server has is DeliveryUnknown and is
never sent twice, and one dropped before its data is a plain ConnectionLost."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from tests._support.faulty_smtpd import FaultyServer, recipients_for
from tests._support.modes import plain_builder

import mailsdk

COUNT = 40
#: drop_after (the server has the message) on every fifth, drop_before on others.
FAULTS = dict.fromkeys(range(2, COUNT, 7), "drop_before") | dict.fromkeys(
    range(0, COUNT, 5), "drop_after"
)


def body(i: int) -> bytes:
    return b"Subject: %d\r\n\r\nx\r\n" % i


def check(results: dict[int, object], server: FaultyServer) -> None:
    assert sorted(results) == list(range(COUNT))
    for i, result in results.items():
        if FAULTS.get(i) == "drop_after":
            assert isinstance(result, mailsdk.DeliveryUnknown), (i, result)
        elif FAULTS.get(i) == "drop_before":
            assert isinstance(result, mailsdk.ConnectionLost), (i, result)
            assert not isinstance(result, mailsdk.DeliveryUnknown), (i, result)
    assert all(n == 1 for n in server.handler.kept_rcpt.values())


def test_threads_share_a_pool_while_connections_drop(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty(FAULTS)
    results: dict[int, object] = {}
    with plain_builder(server.host, server.port).build().pool(max_connections=4) as pool:

        def one(i: int) -> None:
            try:
                results[i] = pool.send_message(
                    body(i), sender="s@x.test", recipients=recipients_for(i)
                )
            except mailsdk.MailError as exc:
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(COUNT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    check(results, server)


async def test_tasks_share_a_pool_while_connections_drop(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty(FAULTS)
    client = plain_builder(server.host, server.port).build_async()
    async with client.pool(max_connections=4) as pool:

        async def one(i: int) -> object:
            try:
                return await pool.send_message(
                    body(i), sender="s@x.test", recipients=recipients_for(i)
                )
            except mailsdk.MailError as exc:
                return exc

        done = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(COUNT))), 60)
    check(dict(enumerate(done)), server)
