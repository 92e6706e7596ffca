"""A 421 inside a pipelined group, and token acquisition bounded by the command deadline."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import (
    Close,
    Expect,
    ScriptedServer,
    Send,
    WaitClose,
    ehlo_reply,
)

from mailsdk import ClientBuilder, CommandRefused, Timeouts
from mailsdk.auth.tokens import AccessToken

Scripted = Callable[..., ScriptedServer]


RAW = b"Subject: review\r\n\r\nreview\r\n"


def short(server: ScriptedServer) -> ClientBuilder:
    timeouts = Timeouts(connect=2.0, greeting=2.0, command=2.0, tls=2.0, data=2.0, quit=0.5)
    return plain_builder(server.host, server.port).with_timeouts(timeouts)


async def test_pipelined_421_then_close_reports_the_421(mode: Mode, scripted: Scripted) -> None:
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
    session = await mode.connect(short(server))
    with pytest.raises(CommandRefused) as info:
        await session.sendmail("a@example.org", ["b@example.com"], RAW)
    assert info.value.reply.code == 421
    assert info.value.is_transient
    assert "DATA" in str(info.value)  # names what got no reply
    assert session.closed


async def test_async_token_provider_is_bounded_by_the_command_deadline(scripted: Scripted) -> None:
    import asyncio
    import time

    from mailsdk import TokenError

    class Hanging:
        async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
            await asyncio.sleep(30)
            raise AssertionError("unreachable")

    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("AUTH XOAUTH2")),
            WaitClose(),
        ]
    )
    builder = short(server).with_timeouts(
        Timeouts(connect=2.0, greeting=2.0, command=0.5, tls=2.0, data=2.0, quit=0.5)
    )
    client = builder.with_token_provider(
        "alice@example.com", Hanging(), allow_plaintext=True
    ).build_async()
    started = time.monotonic()
    with pytest.raises(TokenError):
        await client.connect()
    assert time.monotonic() - started < 0.5 + 1.5
