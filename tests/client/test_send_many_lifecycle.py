"""``send_many`` stopped early, re-entered or cancelled: on the express lane and the general flow.

Each test runs twice, once with the express lane allowed (it is taken: SMTP, PIPELINING, no
telemetry, no wire log) and once with it turned off, and expects the same: with replies owed
or after a 421 the session is closed; between messages it stays usable; a call made from the
loop consuming the outcomes is refused before any I/O and the run goes on undisturbed.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import (
    Expect,
    ExpectBlock,
    ReadData,
    ScriptedServer,
    Send,
    WaitClose,
)

import mailsdk
from mailsdk import DeliveryStatus, Outgoing
from mailsdk.client import _express

Scripted = Callable[..., ScriptedServer]


@pytest.fixture(params=[True, False], ids=["express", "general"])
def lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(_express, "ENABLED", request.param)
    return typing.cast("bool", request.param)


def item(i: int) -> Outgoing:
    raw = b"Subject: message %d\r\n\r\nline %d\r\n" % (i, i)
    return Outgoing(raw, sender="sender@example.org", recipients=("rcpt@example.com",), key=i)


async def first_then_stop(session: typing.Any, items: Iterator[Outgoing]) -> mailsdk.SendOutcome:
    """The first outcome of ``send_many(items)``; then the iterator is closed."""
    if isinstance(session, mailsdk.AsyncSession):
        outcomes: typing.Any = session.send_many(items)
        first = await anext(outcomes)
        await outcomes.aclose()
        return typing.cast("mailsdk.SendOutcome", first)
    sync_outcomes = session.send_many(items)
    first = next(sync_outcomes)
    sync_outcomes.close()
    return typing.cast("mailsdk.SendOutcome", first)


def closing_after_first_content() -> list[typing.Any]:
    return [
        Send(b"220 mx.test ESMTP\r\n"),
        Expect(b"EHLO"),
        Send(b"250-mx.test\r\n250 PIPELINING\r\n"),
        ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ReadData(),
        Send(b"421 4.3.2 shutting down\r\n"),
        WaitClose(),
    ]


async def test_stopping_after_a_421_closes_the_session(
    mode: Mode, scripted: Scripted, lane: bool
) -> None:
    # The 421 came and every outcome after it is decided (nothing is owed any more): the caller
    # stopping there must still close the session; left open, the next call would write to a
    # server that is closing and wait for a reply that never comes.
    server = scripted(closing_after_first_content())
    session = await mode.connect(plain_builder(server.host, server.port))
    first = await first_then_stop(session.inner, (item(i) for i in range(4)))
    assert first.status is DeliveryStatus.REFUSED
    assert session.closed
    with pytest.raises(mailsdk.ConnectionLost):
        await session.noop()
