"""Single commands, the handshake and session lifetime, in both modes.

EHLO/HELO fallback, the default EHLO name, NOOP/RSET/VRFY/EXPN/HELP/execute, QUIT and the
context managers (QUIT then close), close() without QUIT, use after close.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.scripted_server import (
    Close,
    Expect,
    ScriptedServer,
    Send,
    WaitClose,
    ehlo_reply,
)
from tests._support.smtpd import SmtpdServer

from mailsdk import CommandRefused, ConnectionLost, HeloRefused, MailError
from mailsdk.client._hostname import default_local_hostname


async def test_ehlo_is_sent_and_capabilities_parsed(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        caps = s.capabilities
        assert caps.esmtp
        assert caps.server_name == "mx.test"
        assert caps.eightbitmime and caps.smtputf8
        assert caps.max_size == 33_554_432
        assert "HELP" in caps.keywords
    assert smtpd.recorder.commands[0] == ("EHLO", "client.test")


async def test_helo_fallback_when_ehlo_is_refused(
    mode: Mode, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(
        [
            Send(b"220 old.test SMTP\r\n"),
            Expect(b"EHLO client.test"),
            Send(b"502 5.5.2 EHLO not implemented\r\n"),
            Expect(b"HELO client.test"),
            Send(b"250 old.test\r\n"),
            Expect(b"NOOP"),
            Send(b"250 ok\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        assert not s.capabilities.esmtp
        assert s.capabilities.keywords == ()
        assert (await s.noop()).code == 250
    server.check()


async def test_ehlo_and_helo_both_refused(
    mode: Mode, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(
        [
            Send(b"220 grumpy.test\r\n"),
            Expect(b"EHLO"),
            Send(b"500 no\r\n"),
            Expect(b"HELO"),
            Send(b"550 go away\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    with pytest.raises(HeloRefused) as info:
        await mode.connect(plain_builder(server.host, server.port))
    assert info.value.reply.code == 550
    assert info.value.command == "HELO"
    server.check()


async def test_default_local_hostname_is_fqdn_or_address_literal(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    builder = plain_builder(smtpd.host, smtpd.port)
    builder = type(builder)(
        endpoint=builder.endpoint, tls_mode=builder.tls_mode, timeouts=builder.timeouts
    )
    async with mode.session(builder):
        pass
    name = smtpd.recorder.ehlo_names[0]
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        assert name == fqdn
    else:
        assert name == "[127.0.0.1]"
    assert name == default_local_hostname(("127.0.0.1", 12345))


async def test_explicit_local_hostname(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(
        plain_builder(smtpd.host, smtpd.port).with_local_hostname("relay.example.org")
    ):
        pass
    assert smtpd.recorder.ehlo_names == ["relay.example.org"]


async def test_noop_rset_vrfy_help(mode: Mode, smtpd_factory: Callable[..., SmtpdServer]) -> None:
    server = smtpd_factory(refuse_rcpt={"ghost@example.com"})
    async with mode.session(plain_builder(server.host, server.port)) as s:
        assert (await s.noop()).code == 250
        assert (await s.rset()).code == 250
        vrfy = await s.vrfy("alice@example.com")
        assert vrfy.code == 252
        assert "alice@example.com" in vrfy.text
        with pytest.raises(CommandRefused) as info:
            await s.vrfy("ghost@example.com")
        assert info.value.reply.code == 550
        assert info.value.command == "VRFY"
        help_reply = await s.help()
        assert help_reply.code == 250
        assert "Supported commands" in help_reply.text
        topic = await s.help("NOOP")
        assert topic.code == 250 and "NOOP" in topic.text
    assert server.recorder.commands[1:] == [
        ("NOOP", None),
        ("RSET", None),
        ("VRFY", "alice@example.com"),
        ("VRFY", "ghost@example.com"),
        ("HELP", None),
        ("HELP", "NOOP"),
        ("QUIT", None),
    ]


async def test_expn_multiline_and_refused(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        reply = await s.expn("staff")
        assert reply.code == 250
        assert reply.lines == (b"Alice <alice@example.com>", b"Bob <bob@example.com>")
        with pytest.raises(CommandRefused) as info:
            await s.expn("nosuchlist")
        assert info.value.reply.code == 550
        assert not s.closed


async def test_execute_returns_any_reply(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        ok = await s.execute("NOOP hello")
        assert ok.code == 250
        unknown = await s.execute("XFROBNICATE now")
        assert unknown.code == 500
        assert not s.closed
        assert (await s.noop()).code == 250
    assert ("NOOP", "hello") in smtpd.recorder.commands
    assert b"XFROBNICATE now\r\n" in smtpd.recorder.raw


async def test_ehlo_again_refreshes_capabilities(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        caps = await s.ehlo()
        assert caps.esmtp
        assert s.capabilities == caps
    assert smtpd.recorder.verbs.count("EHLO") == 2


async def test_quit_returns_221_and_closes(mode: Mode, smtpd: SmtpdServer) -> None:
    s = await mode.connect(plain_builder(smtpd.host, smtpd.port))
    reply = await s.quit()
    assert reply.code == 221
    assert s.closed
    with pytest.raises(ConnectionLost):
        await s.noop()
    await s.close()  # idempotent
    assert smtpd.recorder.verbs == ["EHLO", "QUIT"]


async def test_context_manager_sends_quit_and_closes(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        assert not s.closed
        assert "open" in repr(s.inner)
    assert s.closed
    assert "closed" in repr(s.inner)
    assert smtpd.recorder.verbs[-1] == "QUIT"


async def test_context_manager_quits_after_a_user_exception(mode: Mode, smtpd: SmtpdServer) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
            raise RuntimeError("boom")
    assert s.closed
    assert smtpd.recorder.verbs[-1] == "QUIT"


async def test_close_does_not_send_quit(mode: Mode, smtpd: SmtpdServer) -> None:
    s = await mode.connect(plain_builder(smtpd.host, smtpd.port))
    await s.close()
    assert s.closed
    await s.close()
    assert "QUIT" not in smtpd.recorder.verbs


async def test_quit_when_server_closes_without_221(
    mode: Mode, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(
        [Send(b"220 x\r\n"), Expect(b"EHLO"), Send(ehlo_reply()), Expect(b"QUIT"), Close()]
    )
    s = await mode.connect(plain_builder(server.host, server.port))
    with pytest.raises(MailError):
        await s.quit()
    assert s.closed
    server.check()


async def test_with_block_tolerates_a_server_gone_at_quit(
    mode: Mode, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(
        [Send(b"220 x\r\n"), Expect(b"EHLO"), Send(ehlo_reply()), Expect(b"QUIT"), Close()]
    )
    async with mode.session(
        plain_builder(server.host, server.port).with_timeouts(TEST_TIMEOUT)
    ) as s:
        pass
    assert s.closed
    server.check()
