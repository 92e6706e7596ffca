"""``send_many`` end to end against aiosmtpd, in both modes.

What the server received is checked byte for byte; each item's outcome comes back in input
order with its key; refusals stay with their message; the session stays usable after refusals
and is closed when an abandoned run still had messages in flight.
"""

from __future__ import annotations

import email.message
import typing
from collections.abc import AsyncIterator, Callable

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import (
    Close,
    Expect,
    ExpectBlock,
    ReadData,
    ScriptedServer,
    Send,
    WaitClose,
)
from tests._support.smtpd import SmtpdServer

import mailsdk
from mailsdk import DeliveryStatus, Outgoing

Scripted = Callable[..., ScriptedServer]

A, P, R, F, U = (
    DeliveryStatus.ACCEPTED,
    DeliveryStatus.PARTIAL,
    DeliveryStatus.REFUSED,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNKNOWN,
)


def raw(i: int) -> bytes:
    return b"Subject: message %d\r\nX-Seq: %d\r\n\r\n.line one\r\nline two %d\r\n" % (i, i, i)


def item(i: int, *recipients: str) -> Outgoing:
    return Outgoing(
        raw(i),
        sender="sender@example.org",
        recipients=recipients or ("rcpt@example.com",),
        key=f"k{i}",
    )


@pytest.mark.parametrize("server", ["pipelining", "chunking", "lock-step"])
async def test_many_messages_arrive_byte_exact_in_order(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer], server: str
) -> None:
    smtpd = smtpd_factory(pipelining=server != "lock-step", chunking=server == "chunking")
    builder = plain_builder(smtpd.host, smtpd.port).with_chunking(
        server == "chunking", chunk_size=16
    )
    async with mode.session(builder) as s:
        outcomes = await s.send_many_list([item(i) for i in range(25)])
        assert (await s.noop()).code == 250  # still in step
    assert [(o.index, o.status, o.key) for o in outcomes] == [(i, A, f"k{i}") for i in range(25)]
    assert [m.content for m in smtpd.recorder.messages] == [raw(i) for i in range(25)]
    assert all(o.result is not None and o.result.queue_id for o in outcomes)
    if server != "lock-step":
        assert "PIPELINING" in " ".join(smtpd.recorder.replies)


@pytest.mark.parametrize("server", ["pipelining", "chunking", "lock-step"])
async def test_one_message_to_many_envelopes_and_others_between_arrive_as_given(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer], server: str
) -> None:
    # The same bytes object for most items (its content is prepared once per run), with other
    # messages between them, LF line ends and a leading dot: each envelope gets its own bytes.
    shared = b"Subject: shared\n\n.dot first\nsame body\n"
    other = [b"Subject: other %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]
    bodies = [shared, shared, other[0], shared, other[1], other[2], shared]
    smtpd = smtpd_factory(pipelining=server != "lock-step", chunking=server == "chunking")
    builder = plain_builder(smtpd.host, smtpd.port).with_chunking(server == "chunking")
    items = [
        Outgoing(body, sender="s@example.org", recipients=[f"r{i}@example.com"])
        for i, body in enumerate(bodies)
    ]
    async with mode.session(builder) as s:
        outcomes = await s.send_many_list(items)
    assert [o.status for o in outcomes] == [A] * len(bodies)
    canonical = b"Subject: shared\r\n\r\n.dot first\r\nsame body\r\n"
    expected = [canonical if body is shared else body for body in bodies]
    assert [m.content for m in smtpd.recorder.messages] == expected
    assert [m.rcpt_tos for m in smtpd.recorder.messages] == [
        [f"r{i}@example.com"] for i in range(len(bodies))
    ]


async def test_refusals_stay_with_their_message(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    smtpd = smtpd_factory(
        pipelining=True, refuse_rcpt=["bad@example.com"], refuse_sender=["evil@example.org"]
    )
    items: list[object] = [
        item(0),
        item(1, "bad@example.com"),
        item(2, "ok@example.com", "bad@example.com"),
        Outgoing(raw(3), sender="evil@example.org", recipients=["rcpt@example.com"]),
        item(4),
    ]
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        outcomes = await s.send_many_list(items)
        assert (await s.noop()).code == 250
    assert [o.status for o in outcomes] == [A, R, P, R, A]
    assert isinstance(outcomes[1].error, mailsdk.RecipientsRefused)
    assert isinstance(outcomes[3].error, mailsdk.SenderRefused)
    assert outcomes[2].result is not None and list(outcomes[2].result.refused) == [
        "bad@example.com"
    ]
    assert [m.content for m in smtpd.recorder.messages] == [raw(0), raw(2), raw(4)]


async def test_messages_of_every_form_and_bad_items(mode: Mode, smtpd: SmtpdServer) -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.com"
    msg["Bcc"] = "hidden@example.com"
    msg["Subject"] = "from headers"
    msg.set_content("hello\n")
    no_recipients = email.message.EmailMessage()
    no_recipients["From"] = "alice@example.org"
    items: list[object] = [msg, no_recipients, 42, item(3)]
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        outcomes = await s.send_many_list(items)
    assert [o.status for o in outcomes] == [A, F, F, A]
    assert isinstance(outcomes[1].error, mailsdk.InvalidInputError)
    assert isinstance(outcomes[2].error, mailsdk.InvalidInputError)
    first, last = smtpd.recorder.messages
    assert sorted(first.rcpt_tos) == ["bob@example.com", "hidden@example.com"]
    assert b"hidden@example.com" not in first.content
    assert last.content == raw(3)


async def test_async_session_accepts_an_async_iterable(
    smtpd_factory: Callable[..., SmtpdServer],
) -> None:
    smtpd = smtpd_factory(pipelining=True)

    async def produce() -> AsyncIterator[Outgoing]:
        for i in range(5):
            yield item(i)

    client = plain_builder(smtpd.host, smtpd.port).build_async()
    async with await client.connect() as session:
        outcomes = [o async for o in session.send_many(produce())]
    assert [o.status for o in outcomes] == [A] * 5
    assert [m.content for m in smtpd.recorder.messages] == [raw(i) for i in range(5)]


async def test_not_iterable_is_a_typed_error(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(mailsdk.InvalidInputError):
            await s.send_many_list(12)
        assert (await s.noop()).code == 250


async def test_stopping_between_messages_keeps_the_session(
    smtpd_factory: Callable[..., SmtpdServer],
) -> None:
    # lock-step: after each outcome nothing is in flight, so the session stays usable
    smtpd = smtpd_factory(pipelining=False)
    with plain_builder(smtpd.host, smtpd.port).build().connect() as session:
        outcomes = session.send_many(item(i) for i in range(5))
        first = next(outcomes)
        outcomes.close()
        assert first.status is A
        assert not session.closed
        assert session.noop().code == 250
    assert len(smtpd.recorder.messages) == 1


async def test_stopping_with_messages_in_flight_closes_the_session(
    smtpd_factory: Callable[..., SmtpdServer],
) -> None:
    smtpd = smtpd_factory(pipelining=True)
    with plain_builder(smtpd.host, smtpd.port).build().connect() as session:
        outcomes = session.send_many(item(i) for i in range(5))
        assert next(outcomes).status is A  # message 1's envelope is in flight
        outcomes.close()
        assert session.closed


async def test_a_drop_after_the_dot_is_unknown_and_the_rest_failed(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(b"250-mx.test\r\n250 PIPELINING\r\n"),
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData(),
            Send(b"250 2.0.0 queued as ONE\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData(),
            Close(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        outcomes = await s.send_many_list([item(i) for i in range(4)])
        assert s.closed
    assert [o.status for o in outcomes] == [A, U, F, F]
    assert isinstance(outcomes[1].error, mailsdk.DeliveryUnknown)
    assert "not sent" in str(outcomes[3].error)
    assert outcomes[3].never_started and outcomes[3].attempts == 0
    assert not outcomes[1].never_started  # UNKNOWN: it may have been delivered


async def test_a_reply_before_the_content_fails_the_message_it_was_never_sent(
    mode: Mode, scripted: Scripted
) -> None:
    # A premature 250 behind the 354: the end of data is refused before any of it is written,
    # so the message was not sent (FAILED), never UNKNOWN; the one before it stays ACCEPTED.
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(b"250-mx.test\r\n250 PIPELINING\r\n"),
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData(),
            Send(b"250 2.0.0 queued as ONE\r\n250 ok\r\n250 ok\r\n354 go\r\n250 too early\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        outcomes = await s.send_many_list([item(i) for i in range(3)])
        assert s.closed
    assert [o.status for o in outcomes] == [A, F, F]
    assert not isinstance(outcomes[1].error, mailsdk.DeliveryUnknown)
    assert len(server.data) == 1  # only the first message's content reached the server


async def test_send_message_raises_delivery_unknown(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(b"250 mx.test\r\n"),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            Close(),
        ]
    )
    session = await mode.connect(plain_builder(server.host, server.port))
    with pytest.raises(mailsdk.DeliveryUnknown) as info:
        await session.sendmail("a@example.org", ["b@example.com"], raw(0))
    assert isinstance(info.value.cause, mailsdk.ConnectionLost)
    assert session.closed


async def test_async_stopping_with_messages_in_flight_closes_the_session(
    smtpd_factory: Callable[..., SmtpdServer],
) -> None:
    smtpd = smtpd_factory(pipelining=True)
    client = plain_builder(smtpd.host, smtpd.port).build_async()
    async with await client.connect() as session:
        outcomes = session.send_many(item(i) for i in range(5))
        assert (await anext(outcomes)).status is A  # message 1's envelope is in flight
        await outcomes.aclose()  # type: ignore[attr-defined]
        assert session.closed


async def test_async_stopping_between_messages_keeps_the_session(
    smtpd_factory: Callable[..., SmtpdServer],
) -> None:
    smtpd = smtpd_factory(pipelining=False)
    client = plain_builder(smtpd.host, smtpd.port).build_async()
    async with await client.connect() as session:
        outcomes = session.send_many(item(i) for i in range(5))
        assert (await anext(outcomes)).status is A
        await outcomes.aclose()  # type: ignore[attr-defined]
        assert not session.closed
        assert (await session.noop()).code == 250


async def test_items_with_a_bad_envelope_fail_alone(mode: Mode, smtpd: SmtpdServer) -> None:
    items = [
        Outgoing(raw(0), sender="a@example.org", recipients=[1, 2]),  # type: ignore[list-item]
        Outgoing(raw(1), sender=b"a@example.org", recipients=["b@example.com"]),  # type: ignore[arg-type]
        item(2),
    ]
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        outcomes = await s.send_many_list(items)
    assert [o.status for o in outcomes] == [F, F, A]
    assert all(isinstance(o.error, mailsdk.InvalidInputError) for o in outcomes[:2])


@pytest.mark.parametrize("produced", [1, 3])
async def test_an_input_that_raises_midway_still_reports_every_item_it_produced(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer], produced: int
) -> None:
    # The items iterator breaks after ``produced`` items. The messages already in flight (with
    # an async iterator, the last one's end-of-data is already written) must still get their
    # outcome before the caller's exception comes out; otherwise a delivered message has no
    # outcome and its caller, seeing only the exception, sends it again.
    smtpd = smtpd_factory(pipelining=True)

    class Broken(Exception):
        pass

    def produce() -> typing.Iterator[Outgoing]:
        yield from (item(i) for i in range(produced))
        raise Broken("the caller's input broke")

    async def aproduce() -> AsyncIterator[Outgoing]:
        for i in range(produced):
            yield item(i)
        raise Broken("the caller's input broke")

    outcomes: list[mailsdk.SendOutcome] = []

    async def consume(session: mailsdk.Session | mailsdk.AsyncSession) -> None:
        if isinstance(session, mailsdk.AsyncSession):
            async for outcome in session.send_many(aproduce()):
                outcomes.append(outcome)
        else:
            outcomes.extend(session.send_many(produce()))

    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(Broken):
            await consume(s.inner)
        assert (await s.noop()).code == 250  # nothing was left half-done
    assert [(o.index, o.status) for o in outcomes] == [(i, A) for i in range(produced)]
    assert [m.content for m in smtpd.recorder.messages] == [raw(i) for i in range(produced)]


async def test_a_message_the_stdlib_cannot_flatten_fails_alone(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    smtpd = smtpd_factory(pipelining=True)
    broken = email.message.Message()
    broken["From"] = "alice@example.org"
    broken["To"] = "bob@example.com"
    broken.set_payload(123)  # type: ignore[arg-type]
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        outcomes = await s.send_many_list([item(0), broken, item(2)])
    assert [o.status for o in outcomes] == [A, F, A]
    assert isinstance(outcomes[1].error, mailsdk.InvalidInputError)
    assert [m.content for m in smtpd.recorder.messages] == [raw(0), raw(2)]
