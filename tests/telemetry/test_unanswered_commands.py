"""Commands that never get a reply are ended as failed when the connection is given up.

A 421 inside a pipelined group, then EOF (RFC 5321 §3.8: the later commands get no reply): the
client reports the 421, gives the connection up, and fails every command still waiting, so each
has an ended span with an error status. Without that, the unanswered command spans were never
ended (and never exported), a one-line mutation the suite used to miss. Both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry.trace import StatusCode
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.scripted_server import Close, Expect, ScriptedServer, Send, ehlo_reply
from tests.telemetry.client_support import Otel, assert_well_formed, statuses

from mailsdk import CommandRefused, RecipientsRefused

Scripted = Callable[..., ScriptedServer]


@pytest.fixture
def otel() -> Iterator[Otel]:
    pipeline = Otel()
    yield pipeline
    pipeline.shutdown()


async def test_commands_left_unanswered_by_a_421_end_as_failed(
    mode: Mode, scripted: Scripted, otel: Otel
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("PIPELINING")),
            Expect(b"MAIL"),
            Expect(b"RCPT"),
            Expect(b"DATA"),
            Send(b"250 2.1.0 ok\r\n421 4.3.2 shutting down\r\n"),
            Close(),
        ]
    )
    builder = (
        plain_builder(server.host, server.port)
        .with_timeouts(TEST_TIMEOUT)
        .with_opentelemetry(**otel.options())
    )
    session = await mode.connect(builder)
    with pytest.raises((CommandRefused, RecipientsRefused)) as info:
        await session.sendmail("a@example.org", ["b@example.com"], b"Subject: s\r\n\r\nx\r\n")
    assert info.value.reply.code == 421
    assert session.closed
    await session.close()  # ends the session span
    spans = otel.spans()
    assert_well_formed(spans)
    commands = [(name, code) for name, code in statuses(spans) if name.startswith("SMTP ")]
    assert ("SMTP MAIL", StatusCode.UNSET) in commands or ("SMTP MAIL", StatusCode.OK) in commands
    assert ("SMTP DATA", StatusCode.ERROR) in commands  # never answered: ended as failed
