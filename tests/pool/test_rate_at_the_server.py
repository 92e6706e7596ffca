"""The shared rate limit as the server sees it, with a fresh pool whose connections are slow to
set up: the tokens are taken once a connection is ready, so the first burst is not held back
by the connect and greeting and then followed at once by the next burst's sends."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tests._support.faulty_smtpd import FaultyServer, recipients_for
from tests._support.modes import Mode, plain_builder
from tests.pool.conftest import run_batch

from mailsdk import DeliveryStatus, Outgoing
from mailsdk.batch import TokenBucket

RATE = 10.0  # messages per second
BURST = 4
CONNECTIONS = 4
SET_UP = 0.5  # seconds the server takes to answer EHLO: a slow connection set-up
WINDOW = 1.0
#: One send of slack for a loaded machine (a late wake-up that bunches two sends). Taking the
#: tokens before the connection was ready puts CONNECTIONS extra sends into the first window.
SLACK = 1


def worst_window(stamps: Sequence[float], window: float) -> int:
    """The most sends the server received within any ``window`` seconds."""
    ordered = sorted(stamps)
    worst = 0
    for i, start in enumerate(ordered):
        worst = max(worst, sum(1 for t in ordered[i:] if t - start <= window))
    return worst


def message(index: int) -> Outgoing:
    body = f"Subject: r{index}\r\n\r\nrate {index}\r\n".encode()
    return Outgoing(body, sender="s@x.test", recipients=recipients_for(index), key=f"r{index}")


async def test_a_fresh_pool_keeps_the_rate_at_the_server(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty(ehlo_delay=SET_UP)
    bucket = TokenBucket(messages_per_second=RATE, burst=BURST)
    outcomes, _ = await run_batch(
        mode,
        plain_builder(server.host, server.port),
        [message(i) for i in range(24)],
        pool={"max_connections": CONNECTIONS},
        rate=bucket,
    )
    assert [o.status for o in outcomes] == [DeliveryStatus.ACCEPTED] * 24
    stamps = server.handler.stamps
    assert len(stamps) == 24
    allowed = BURST + RATE * WINDOW
    assert worst_window(stamps, WINDOW) <= allowed + SLACK, sorted(
        round(t - min(stamps), 3) for t in stamps
    )
