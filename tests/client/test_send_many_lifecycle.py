"""``send_many`` stopped early, re-entered or cancelled: on the express lane and the general flow.

Each test runs twice, once with the express lane allowed (it is taken: SMTP, PIPELINING, no
telemetry, no wire log) and once with it turned off, and expects the same: with replies owed
or after a 421 the session is closed; between messages it stays usable; a call made from the
loop consuming the outcomes is refused before any I/O and the run goes on undisturbed.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.scripted_server import (
    Expect,
    ExpectBlock,
    ReadData,
    ScriptedServer,
    Send,
    WaitClose,
)

import mailsdk
import mailsdk.auth
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


@pytest.mark.parametrize("call", ["noop", "send_many", "send_message", "authenticate"])
async def test_a_call_from_the_consuming_loop_is_refused_and_the_run_goes_on(
    mode: Mode, smtpd_factory: Callable[..., typing.Any], lane: bool, call: str
) -> None:
    smtpd = smtpd_factory(pipelining=True)
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        inner = s.inner
        seen: list[mailsdk.SendOutcome] = []
        refused: list[BaseException] = []

        async def reenter() -> None:
            try:
                if call == "noop":
                    await mode.call(inner.noop)
                elif call == "authenticate":
                    # Refused before it swaps the session's token provider (the run in
                    # progress may be the one using it).
                    before = inner._driver.token_provider
                    provider = mailsdk.auth.StaticTokenProvider("t")
                    settings = mailsdk.AuthSettings(username="u", token_provider=provider)
                    try:
                        await mode.call(inner.authenticate, settings)
                    finally:
                        assert inner._driver.token_provider is before
                elif call == "send_message":
                    message = b"Subject: x\r\n\r\nx\r\n"
                    await mode.call(inner.sendmail, "x@example.org", ["y@example.com"], message)
                elif isinstance(inner, mailsdk.AsyncSession):
                    async for _ in inner.send_many([item(99)]):
                        pass
                else:
                    for _ in inner.send_many([item(99)]):
                        pass
            except mailsdk.LocalProtocolError as exc:
                refused.append(exc)

        if isinstance(inner, mailsdk.AsyncSession):
            async for outcome in inner.send_many(item(i) for i in range(4)):
                seen.append(outcome)
                await reenter()
        else:
            for outcome in inner.send_many(item(i) for i in range(4)):
                seen.append(outcome)
                await reenter()
        assert [(o.key, o.status) for o in seen] == [(i, DeliveryStatus.ACCEPTED) for i in range(4)]
        assert len(refused) == 4
        assert (await s.noop()).code == 250  # busy was cleared, still in step
    assert len(smtpd.recorder.messages) == 4


async def test_an_outcome_is_handed_on_before_the_next_item_is_pulled(
    mode: Mode, smtpd_factory: Callable[..., typing.Any], lane: bool
) -> None:
    # A source that produces message N+2 only once the caller has seen message N's outcome
    # (two in flight, as the pipeline needs): an outcome held back until the next item is
    # pulled would wait for the source, which waits for the outcome.
    smtpd = smtpd_factory(pipelining=True)
    seen: list[int] = []
    starved: list[int] = []

    def source() -> Iterator[Outgoing]:
        for i in range(6):
            if i >= 3 and i - 3 not in seen:
                starved.append(i)  # pulled before the outcome it depends on was handed on
            yield item(i)

    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        if isinstance(s.inner, mailsdk.AsyncSession):
            async for outcome in s.inner.send_many(source()):
                seen.append(typing.cast("int", outcome.key))
        else:
            for outcome in s.inner.send_many(source()):
                seen.append(typing.cast("int", outcome.key))
    assert seen == list(range(6))
    assert starved == []
    assert len(smtpd.recorder.messages) == 6


async def test_an_async_source_waiting_on_the_outcomes_is_not_starved(
    smtpd_factory: Callable[..., typing.Any], lane: bool
) -> None:
    smtpd = smtpd_factory(pipelining=True)
    seen: asyncio.Queue[int] = asyncio.Queue()

    async def source() -> AsyncIterator[Outgoing]:
        for i in range(6):
            if i >= 2:  # message i - 2's outcome first (the test's timeout guards a hang)
                assert await asyncio.wait_for(seen.get(), TEST_TIMEOUT) == i - 2
            yield item(i)

    client = plain_builder(smtpd.host, smtpd.port).build_async()
    async with await client.connect() as s:
        statuses = []
        async for outcome in s.send_many(source()):
            statuses.append(outcome.status)
            seen.put_nowait(typing.cast("int", outcome.key))
    assert statuses == [DeliveryStatus.ACCEPTED] * 6


async def test_stopping_after_a_refusal_with_nothing_owed_keeps_the_session(
    mode: Mode, smtpd_factory: Callable[..., typing.Any], lane: bool
) -> None:
    # The sender is refused (no transaction open, nothing owed): the caller stopping at that
    # outcome leaves the conversation in step, so the session stays usable. Had the next
    # item's envelope been written before the outcome was handed on, it would be owed replies.
    smtpd = smtpd_factory(pipelining=True, refuse_sender=["evil@example.org"])
    evil = Outgoing(b"Subject: x\r\n\r\nx\r\n", sender="evil@example.org", recipients=["r@x.org"])
    session = await mode.connect(plain_builder(smtpd.host, smtpd.port))
    items = iter([evil, item(1), item(2)])
    first = await first_then_stop(session.inner, items)
    assert first.status is DeliveryStatus.REFUSED
    assert not session.closed
    assert (await session.noop()).code == 250
    await session.close()
    assert [c[0] for c in smtpd.recorder.commands if c[0] == "MAIL"] == ["MAIL"]  # item 1 never
    assert smtpd.recorder.messages == []


@pytest.mark.parametrize("where", ["reading", "awaiting-the-source"])
async def test_a_cancelled_run_with_replies_owed_closes_the_session(
    scripted: Scripted, lane: bool, where: str
) -> None:
    steps = [
        Send(b"220 mx.test ESMTP\r\n"),
        Expect(b"EHLO"),
        Send(b"250-mx.test\r\n250 PIPELINING\r\n"),
        ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ReadData(),  # then no final reply: it is owed when the task is cancelled
        WaitClose(),
    ]
    server = scripted(steps)
    client = plain_builder(server.host, server.port).build_async()
    session = await client.connect()
    pulled = asyncio.Event()

    async def source() -> AsyncIterator[Outgoing]:
        yield item(0)
        if where == "awaiting-the-source":
            pulled.set()
            await asyncio.Event().wait()  # never produces the next item

    async def consume() -> None:
        async for _ in session.send_many(source()):
            pass

    task = asyncio.create_task(consume())
    while not server.data:  # the content arrived (the server saw the end of the data)
        await asyncio.sleep(0.01)
    if where == "awaiting-the-source":
        await pulled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.closed  # a stale reply is owed: never reused
    with pytest.raises(mailsdk.ConnectionLost):
        await session.noop()


async def test_a_message_is_sent_without_waiting_for_a_slow_async_source(
    smtpd_factory: Callable[..., typing.Any], lane: bool
) -> None:
    # The source has the next message only once the previous one has arrived (a queue fed by
    # events): nothing of message 0 may wait on the source, not its envelope's replies either.
    smtpd = smtpd_factory(pipelining=True)

    async def arrived(count: int) -> None:
        while len(smtpd.recorder.messages) < count:
            await asyncio.sleep(0.01)

    async def source() -> AsyncIterator[Outgoing]:
        for i in range(3):
            if i:
                await asyncio.wait_for(arrived(i), TEST_TIMEOUT)
            yield item(i)

    client = plain_builder(smtpd.host, smtpd.port).build_async()
    async with await client.connect() as s:
        outcomes = [outcome async for outcome in s.send_many(source())]
    assert [o.status for o in outcomes] == [DeliveryStatus.ACCEPTED] * 3


async def test_a_source_that_stops_on_a_421_is_not_drained_first(
    mode: Mode, scripted: Scripted, lane: bool
) -> None:
    # The pool's feeds stop handing out work once the caller has seen an outcome that halts
    # the connection. After the 421 every item pulled is reported never started: each such
    # outcome must reach the caller before the next pull, or the whole supply (here 50) is
    # pulled into the closing session first (and the pool's rate tokens spent on it).
    server = scripted(closing_after_first_content())
    halted: list[int] = []
    pulled: list[int] = []

    def source() -> Iterator[Outgoing]:
        for i in range(50):
            if halted:
                return
            pulled.append(i)
            yield item(i)

    session = await mode.connect(plain_builder(server.host, server.port))
    outcomes = []
    if isinstance(session.inner, mailsdk.AsyncSession):
        async for outcome in session.inner.send_many(source()):
            outcomes.append(outcome)
            halted.append(outcome.index)
    else:
        for outcome in session.inner.send_many(source()):
            outcomes.append(outcome)
            halted.append(outcome.index)
    assert session.closed
    assert len(pulled) <= 3  # the one refused by the 421, the one written, one pulled ahead
    assert len(outcomes) == len(pulled)
    assert outcomes[0].status is DeliveryStatus.REFUSED
    assert all(o.never_started for o in outcomes[1:])
