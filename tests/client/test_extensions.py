"""PIPELINING (RFC 2920) and CHUNKING/BDAT (RFC 3030) end to end, both modes.

The scripted server proves the grouping: it answers nothing until MAIL, every RCPT and DATA have
arrived, and records how many reads that took; every reply of the group is checked. aiosmtpd
(with PIPELINING advertised and a small BDAT implementation) checks the delivered bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import (
    Expect,
    ExpectBlock,
    ReadBytes,
    ReadData,
    ScriptedServer,
    Send,
    WaitClose,
    ehlo_reply,
)
from tests._support.smtpd import SmtpdServer

from mailsdk import CapabilityError, DataRefused, MailOptions, RecipientsRefused, SenderRefused
from mailsdk.esmtp import Capabilities

Scripted = Callable[..., ScriptedServer]
SmtpdFactory = Callable[..., SmtpdServer]
RAW = b"Subject: ext\r\n\r\nline\r\n.leading dot\r\n"
GREETING = [Send(b"220 mx.test ESMTP\r\n"), Expect(b"EHLO")]
QUIT = [Expect(b"QUIT"), Send(b"221 bye\r\n"), WaitClose()]


async def test_pipelined_group_is_one_write(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("PIPELINING", "8BITMIME")),
            ExpectBlock(
                (
                    b"MAIL FROM:<a@example.org>",
                    b"RCPT TO:<b@example.com>",
                    b"RCPT TO:<x@example.net>",
                    b"DATA",
                )
            ),
            Send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n354 go ahead\r\n"),
            ReadData(),
            Send(b"250 2.0.0 queued as PIPE1\r\n"),
            *QUIT,
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        result = await s.sendmail("a@example.org", ["b@example.com", "x@example.net"], RAW)
    server.check()
    assert server.block_reads == [1]
    assert result.accepted == ("b@example.com",)
    assert result.refused["x@example.net"].code == 550
    assert result.queue_id == "PIPE1"
    assert server.data == [b"Subject: ext\r\n\r\nline\r\n..leading dot\r\n"]


async def test_pipelined_refused_sender_after_354_ends_the_data_cleanly(
    mode: Mode, scripted: Scripted
) -> None:
    # A server that refuses MAIL but still says 354 to the pipelined DATA (RFC 2920 §3.1):
    # the client must send an empty body and the terminator, then RSET.
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("PIPELINING")),
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"553 5.7.1 sender refused\r\n250 ok\r\n354 go ahead\r\n"),
            ReadData(),
            Send(b"554 no valid recipients\r\n"),
            Expect(b"RSET"),
            Send(b"250 ok\r\n"),
            *QUIT,
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        with pytest.raises(SenderRefused):
            await s.sendmail("bad@example.org", ["b@example.com"], RAW)
    server.check()
    assert server.data == [b""]


async def test_pipelined_all_recipients_refused(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("PIPELINING")),
            ExpectBlock((b"MAIL", b"RCPT", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n550 no\r\n551 no\r\n554 5.5.1 no valid recipients\r\n"),
            Expect(b"RSET"),
            Send(b"250 ok\r\n"),
            *QUIT,
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        with pytest.raises(RecipientsRefused) as info:
            await s.sendmail("a@example.org", ["x@example.net", "y@example.net"], RAW)
        assert {r: rep.code for r, rep in info.value.refused.items()} == {
            "x@example.net": 550,
            "y@example.net": 551,
        }
    server.check()


async def test_pipelining_can_be_switched_off(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("PIPELINING")),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            Send(b"250 queued as SLOW\r\n"),
            *QUIT,
        ]
    )
    async with mode.session(plain_builder(server.host, server.port).with_pipelining(False)) as s:
        result = await s.sendmail("a@example.org", ["b@example.com"], RAW)
    server.check()
    assert result.queue_id == "SLOW"


async def test_pipelining_with_aiosmtpd(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(pipelining=True, refuse_rcpt={"x@example.net"})
    async with mode.session(plain_builder(server.host, server.port)) as s:
        for _ in range(2):
            result = await s.sendmail("a@example.org", ["b@example.com", "x@example.net"], RAW)
            assert result.accepted == ("b@example.com",)
    assert [m.content for m in server.recorder.messages] == [RAW, RAW]
    groups = [c for c in server.recorder.chunks if c.startswith(b"MAIL FROM:")]
    assert len(groups) == 2
    assert all(g.endswith(b"DATA\r\n") and g.count(b"RCPT TO:") == 2 for g in groups)


async def test_bdat_with_scripted_server(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("CHUNKING", "PIPELINING")),
            ExpectBlock((b"MAIL", b"RCPT")),
            Send(b"250 ok\r\n250 ok\r\n"),
            Expect(b"BDAT 16"),
            ReadBytes(16),
            Send(b"250 2.0.0 chunk\r\n"),
            Expect(b"BDAT 16"),
            ReadBytes(16),
            Send(b"250 2.0.0 chunk\r\n"),
            Expect(b"BDAT 3 LAST"),
            ReadBytes(3),
            Send(b"250 2.0.0 queued as BDAT1\r\n"),
            *QUIT,
        ]
    )
    body = b"0123456789abcdef" * 2 + b"end"
    async with mode.session(
        plain_builder(server.host, server.port).with_chunking(chunk_size=16)
    ) as s:
        result = await s.sendmail("a@example.org", ["b@example.com"], body)
    server.check()
    assert b"".join(server.data) == body
    assert result.queue_id == "BDAT1"


async def test_bdat_chunk_refused(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("CHUNKING")),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"BDAT 4"),
            ReadBytes(4),
            Send(b"552 5.3.4 too much\r\n"),
            Expect(b"RSET"),
            Send(b"250 ok\r\n"),
            *QUIT,
        ]
    )
    async with mode.session(
        plain_builder(server.host, server.port).with_chunking(chunk_size=4)
    ) as s:
        with pytest.raises(DataRefused) as info:
            await s.sendmail("a@example.org", ["b@example.com"], b"12345678")
        assert info.value.reply.code == 552
        assert info.value.command == "BDAT"
    server.check()


async def test_bdat_with_aiosmtpd_keeps_bytes_exact(
    mode: Mode, smtpd_factory: SmtpdFactory
) -> None:
    server = smtpd_factory(chunking=True, pipelining=True)
    # BDAT needs no dot-stuffing: lines starting with '.' and a lone '.' go through verbatim
    body = b"Subject: bdat\r\n\r\n.\r\n..two\r\nend\r\n" * 50
    async with mode.session(
        plain_builder(server.host, server.port).with_chunking(True, chunk_size=100)
    ) as s:
        assert s.capabilities.chunking
        result = await s.sendmail("a@example.org", ["b@example.com"], body)
    assert server.recorder.messages[0].content == body
    assert result.size == len(body)
    assert "DATA" not in server.recorder.verbs
    assert server.recorder.verbs.count("BDAT") == -(-len(body) // 100)


async def test_chunking_required_but_not_offered(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port).with_chunking(True)) as s:
        with pytest.raises(CapabilityError) as info:
            await s.sendmail("a@example.org", ["b@example.com"], RAW)
        assert info.value.extension == "CHUNKING"
    assert "MAIL" not in smtpd.recorder.verbs


async def test_chunking_off_uses_data(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(chunking=True)
    async with mode.session(plain_builder(server.host, server.port).with_chunking(False)) as s:
        await s.sendmail("a@example.org", ["b@example.com"], RAW)
    assert "BDAT" not in server.recorder.verbs
    assert server.recorder.messages[0].content == RAW


class MtPriority:
    """The extensions guide's example (RFC 6710): it never checks the capabilities itself."""

    keyword = "MT-PRIORITY"

    def parse(self, params: str) -> str:
        return params or "MIXER"

    def mail_parameters(self, options: MailOptions, caps: Capabilities) -> tuple[str, ...]:
        level = options.extensions.get(self.keyword)
        return () if level is None else (f"MT-PRIORITY={int(str(level))}",)


async def test_with_extension_contributes_its_parameter_when_advertised(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("MT-PRIORITY STANAG4406")),
            Expect(b"MAIL FROM:<a@example.org> MT-PRIORITY=3\r\n"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT TO:<b@example.com>\r\n"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            Send(b"250 queued\r\n"),
            *QUIT,
        ]
    )
    builder = plain_builder(server.host, server.port).with_extension(MtPriority())
    async with mode.session(builder) as s:
        assert s.capabilities.get("MT-PRIORITY") == "STANAG4406"  # parsed by the extension
        options = MailOptions(extensions={"MT-PRIORITY": 3})
        await s.sendmail("a@example.org", ["b@example.com"], RAW, mail_options=options)
    server.check()


async def test_an_extension_the_server_never_offered_adds_nothing(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    builder = plain_builder(smtpd.host, smtpd.port).with_extension(MtPriority())
    async with mode.session(builder) as s:
        options = MailOptions(extensions={"MT-PRIORITY": 3})
        with pytest.raises(CapabilityError, match="MT-PRIORITY") as info:
            await s.sendmail("a@example.org", ["b@example.com"], RAW, mail_options=options)
        assert info.value.extension == "MT-PRIORITY"
        assert "MAIL" not in smtpd.recorder.verbs
        await s.sendmail("a@example.org", ["b@example.com"], RAW)
    (message,) = smtpd.recorder.messages
    assert not any("MT-PRIORITY" in o for o in message.mail_options)


BINARY = b"Subject: bin\r\n\r\n\x00\x01bare\nlf\rcr\r\n.\r\n\xff\xfe"


async def test_binarymime_content_goes_in_bdat_exactly_as_given(
    mode: Mode, scripted: Scripted
) -> None:
    # RFC 3030 §3: no CR/LF canonicalisation, no dot-stuffing, BDAT only.
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("CHUNKING", "BINARYMIME", "8BITMIME")),
            Expect(b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT TO:<b@example.com>"),
            Send(b"250 ok\r\n"),
            Expect(f"BDAT {len(BINARY)} LAST\r\n".encode()),
            ReadBytes(len(BINARY)),
            Send(b"250 queued\r\n"),
            *QUIT,
        ]
    )
    options = MailOptions(body="BINARYMIME")
    # chunking "when offered" (the default) or even "never": BINARYMIME forces BDAT
    async with mode.session(plain_builder(server.host, server.port)) as s:
        await s.sendmail("a@example.org", ["b@example.com"], BINARY, mail_options=options)
    server.check()
    assert f"BDAT {len(BINARY)} LAST\r\n".encode() + BINARY in bytes(server.received)


async def test_binarymime_is_never_sent_over_data(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *GREETING,
            Send(ehlo_reply("CHUNKING", "BINARYMIME")),
            Expect(b"NOOP"),  # refused locally: neither MAIL nor DATA was written
            Send(b"250 ok\r\n"),
            *QUIT,
        ]
    )
    never_bdat = plain_builder(server.host, server.port).with_chunking(False)
    async with mode.session(never_bdat) as s:
        with pytest.raises(CapabilityError, match="BINARYMIME"):
            await s.sendmail(
                "a@example.org",
                ["b@example.com"],
                BINARY,
                mail_options=MailOptions(body="BINARYMIME"),
            )
        assert (await s.noop()).code == 250
    server.check()
