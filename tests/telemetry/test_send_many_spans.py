"""Telemetry of ``send_many``: each message its own ``smtp.send`` span, each command its own span
(parented to its message) even when message N's end-of-data and message N+1's envelope share one
write."""

from __future__ import annotations

import typing
from collections.abc import Iterator

import pytest
from opentelemetry.trace import StatusCode
from tests._support.smtpd import start_smtpd
from tests.telemetry.client_support import Otel, assert_well_formed, attrs_of, children, plain

from mailsdk import DeliveryStatus, Outgoing
from mailsdk.telemetry import attributes as names


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return typing.cast("str", request.param)


@pytest.fixture
def otel() -> Iterator[Otel]:
    pipeline = Otel()
    yield pipeline
    pipeline.shutdown()


def items(n: int) -> list[Outgoing]:
    refused = "nobody@example.com"
    return [
        Outgoing(
            b"Subject: %d\r\n\r\nbody\r\n" % i,
            sender="a@example.org",
            recipients=[refused if i == 1 else "b@example.com"],
        )
        for i in range(n)
    ]


async def test_one_send_span_per_message_and_one_span_per_command(mode: str, otel: Otel) -> None:
    server = start_smtpd(pipelining=True, refuse_rcpt=["nobody@example.com"])
    try:
        builder = plain(server.port, otel)
        if mode == "sync":
            with builder.build().connect() as s:
                outcomes = list(s.send_many(items(4)))
        else:
            async with await builder.build_async().connect() as a:
                outcomes = [o async for o in a.send_many(items(4))]
    finally:
        server.stop()
    assert [o.status for o in outcomes] == [
        DeliveryStatus.ACCEPTED,
        DeliveryStatus.REFUSED,
        DeliveryStatus.ACCEPTED,
        DeliveryStatus.ACCEPTED,
    ]
    spans = otel.spans()
    session = assert_well_formed(spans)
    sends = [s for s in children(session, spans) if s.name == names.SPAN_SEND]
    assert len(sends) == 4
    verbs = [[c.name.removeprefix("SMTP ") for c in children(send, spans)] for send in sends]
    assert verbs == [
        ["MAIL", "RCPT", "DATA", "DATA.END"],
        ["MAIL", "RCPT", "DATA", "RSET"],  # all refused: MAIL was accepted, so RSET
        ["MAIL", "RCPT", "DATA", "DATA.END"],
        ["MAIL", "RCPT", "DATA", "DATA.END"],
    ]
    # message 0's end-of-data was written together with message 1's MAIL, RCPT and DATA
    end0 = children(sends[0], spans)[-1]
    mail1 = children(sends[1], spans)[0]
    assert attrs_of(end0)[names.SMTP_PIPELINE_SIZE] == 4
    assert attrs_of(mail1)[names.SMTP_PIPELINE_SIZE] == 4
    assert [s.status.status_code for s in sends] == [
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.UNSET,
        StatusCode.UNSET,
    ]
    assert all(attrs_of(s)[names.SMTP_RECIPIENT_COUNT] == 1 for s in sends)
