"""Server throttling cuts the connections a pool uses (and they grow back): both modes against
a server that answers ``451 4.7.0 too many connections`` beyond two open connections."""

from __future__ import annotations

import typing
from collections.abc import Callable

from tests._support.faulty_smtpd import FaultyServer, recipients_for
from tests._support.modes import Mode, plain_builder

from mailsdk import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.batch import Progress, RetryPolicy

RETRY = RetryPolicy(attempts=10, backoff=0.01, jitter=0.0, throttle_delay=0.02)


def message(index: int) -> Outgoing:
    body = f"Subject: t{index}\r\n\r\nthrottle {index}\r\n".encode()
    return Outgoing(body, sender="s@x.test", recipients=recipients_for(index), key=f"t{index}")


async def test_throttling_replies_cut_the_connections_in_use(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty(max_concurrent=2)
    client = mode.build(plain_builder(server.host, server.port))
    events: list[Progress] = []
    items = [message(i) for i in range(80)]
    outcomes: list[SendOutcome]
    if mode.is_async:
        async with client.pool(max_connections=6) as apool:  # type: ignore[union-attr]
            run = apool.send_batch(items, retry=RETRY, on_progress=events.append)
            outcomes = [o async for o in run]
            limit, stats = apool.concurrency, apool.stats()
    else:
        with client.pool(max_connections=6) as spool:  # type: ignore[union-attr]
            outcomes = list(spool.send_batch(items, retry=RETRY, on_progress=events.append))
            limit, stats = spool.concurrency, spool.stats()
    handler = server.handler
    assert sorted(o.index for o in outcomes) == list(range(80))
    assert all(o.status is DeliveryStatus.ACCEPTED for o in outcomes), [
        (o.index, o.status, o.error) for o in outcomes if not o.ok
    ]
    assert all(n == 1 for n in handler.kept_rcpt.values()) and len(handler.kept_rcpt) == 80
    assert handler.throttled >= 1  # the server did push back
    seen = [e.connections for e in events]
    assert seen[0] is not None and min(typing.cast("list[int]", seen)) <= 2
    # The limit settles at what the server takes (a cut at 3 open ones, regrowth below it),
    # and the connections above it were closed, not left idle.
    assert limit <= 3 and stats["open"] <= 3
    assert events[-1].connections == limit


async def test_good_replies_let_the_limit_grow_back(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty()
    client = mode.build(plain_builder(server.host, server.port))
    items = [message(i) for i in range(40)]
    if mode.is_async:
        async with client.pool(max_connections=4) as apool:  # type: ignore[union-attr]
            await apool.throttled()
            await apool.throttled()
            assert apool.concurrency == 1
            outcomes = [o async for o in apool.send_batch(items)]
            limit = apool.concurrency
    else:
        with client.pool(max_connections=4) as spool:  # type: ignore[union-attr]
            spool.throttled()
            spool.throttled()
            assert spool.concurrency == 1
            outcomes = list(spool.send_batch(items))
            limit = spool.concurrency
    assert all(o.status is DeliveryStatus.ACCEPTED for o in outcomes)
    assert limit == 4  # 1 + 2 + 3 good replies bring it back to max_connections
