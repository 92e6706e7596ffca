"""Command injection and SMTP smuggling, against the recording aiosmtpd server, both modes.

CR, LF, NUL and other controls in any argument (addresses, EHLO name, VRFY/EXPN/HELP argument,
an ``execute`` line, the AUTH username) raise :class:`InvalidInputError` before a byte of that
command is written: the recorder proves the server never saw it. Bodies with bare CR/LF and
lone dots arrive as one message, canonicalised and dot-stuffed, with no early terminator.
"""

from __future__ import annotations

import email.message
import ssl
from collections.abc import Callable

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.smtpd import SmtpdServer

from mailsdk import ClientBuilder, InvalidInputError
from mailsdk.transport import TlsSettings

SmtpdFactory = Callable[..., SmtpdServer]
EVIL = ["\r\nRSET", "\nRSET", "\rRSET", "\x00RSET", "\x1bRSET", "\x7fRSET"]
MARKER = b"evil.example"


def assert_nothing_injected(server: SmtpdServer, verbs_before: list[str]) -> None:
    assert server.recorder.verbs == verbs_before
    assert b"RSET" not in server.recorder.raw
    assert MARKER not in server.recorder.raw


@pytest.mark.parametrize("bad", EVIL, ids=repr)
async def test_control_characters_in_every_session_argument(
    mode: Mode, smtpd: SmtpdServer, bad: str
) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        before = smtpd.recorder.verbs
        calls = [
            lambda: s.sendmail(f"a@example.org{bad}", ["b@example.com"], b"x\r\n"),
            lambda: s.sendmail("a@example.org", [f"b@example.com{bad}"], b"x\r\n"),
            lambda: s.sendmail(
                "a@example.org",
                ["ok@example.com", f"<b@example.com>{bad} MAIL FROM:<x@evil.example>"],
                b"x\r\n",
            ),
            lambda: s.vrfy(f"postmaster{bad}"),
            lambda: s.expn(f"staff{bad}"),
            lambda: s.help(f"NOOP{bad}"),
            lambda: s.execute(f"NOOP{bad}"),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                await call()
            assert_nothing_injected(smtpd, before)
        # every refusal was local: the session is intact
        assert not s.closed
        assert (await s.noop()).code == 250
    assert smtpd.recorder.messages == []


@pytest.mark.parametrize("bad", EVIL[:3], ids=repr)
async def test_control_characters_in_the_ehlo_name(
    mode: Mode, smtpd: SmtpdServer, bad: str
) -> None:
    builder = plain_builder(smtpd.host, smtpd.port).with_local_hostname(f"client.test{bad}")
    with pytest.raises(InvalidInputError):
        await mode.connect(builder)
    assert "EHLO" not in smtpd.recorder.verbs
    assert b"RSET" not in smtpd.recorder.raw


@pytest.mark.parametrize("bad", EVIL[:3], ids=repr)
async def test_control_characters_in_the_auth_username(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
    bad: str,
) -> None:
    server = smtpd_factory(starttls=server_ssl_context, users={"u": "p"})
    builder = (
        ClientBuilder.smtp(server.host, server.port)
        .with_tls("starttls", settings=client_tls, server_hostname="localhost")
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )
    async with mode.session(builder) as s:
        for mechanism in ("PLAIN", "LOGIN"):
            with pytest.raises(InvalidInputError):
                await s.login(f"u{bad}", "p", mechanisms=[mechanism])
        assert "AUTH" not in server.recorder.verbs
        assert server.recorder.auth_logins == []
        assert await s.login("u", "p") in ("PLAIN", "LOGIN")


async def test_header_injection_through_the_envelope_is_impossible(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(InvalidInputError):
            await s.sendmail(
                "a@example.org",
                "b@example.com\r\nDATA\r\n.\r\nMAIL FROM:<x@evil.example>",
                b"x\r\n",
            )
    assert smtpd.recorder.verbs == ["EHLO", "QUIT"]


SMUGGLING_BODIES = {
    "bare-lf-dot": b"Subject: s\r\n\r\nbefore\n.\nMAIL FROM:<x@evil.example>\nafter\r\n",
    "bare-cr-dot": b"Subject: s\r\n\r\nbefore\r.\rMAIL FROM:<x@evil.example>\rafter\r\n",
    "crlf-dot-crlf": b"Subject: s\r\n\r\nbefore\r\n.\r\nMAIL FROM:<x@evil.example>\r\nafter\r\n",
    "mixed": b"Subject: s\r\n\r\nbefore\r\n.\nMAIL FROM:<x@evil.example>\n.\r\r\n..two\n.",
    "leading-dot": b".Subject: s\r\n\r\n.\r\n..\r\n...\r\n",
}


@pytest.mark.parametrize("body", list(SMUGGLING_BODIES.values()), ids=list(SMUGGLING_BODIES))
async def test_smuggling_attempts_arrive_as_one_stuffed_message(
    mode: Mode, smtpd: SmtpdServer, body: bytes
) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        result = await s.sendmail("a@example.org", ["b@example.com"], body)
        # the session is still in step after the message
        assert (await s.noop()).code == 250
    assert smtpd.recorder.verbs == ["EHLO", "MAIL", "RCPT", "DATA", "NOOP", "QUIT"]
    (message,) = smtpd.recorder.messages
    expected = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert message.content == expected
    assert result.size == len(
        body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    )
    # on the wire: only CRLF line ends, every line starting with '.' doubled, one terminator
    wire = bytes(smtpd.recorder.raw)
    data = wire.split(b"DATA\r\n", 1)[1].split(b"NOOP\r\n", 1)[0]
    assert data.endswith(b"\r\n.\r\n")
    payload = data[: -len(b".\r\n")]
    assert b"\r\n.\r\n" not in b"\r\n" + payload
    assert b"\n" not in payload.replace(b"\r\n", b"")
    assert b"\r" not in payload.replace(b"\r\n", b"")
    for line in payload.split(b"\r\n"):
        assert not line.startswith(b".") or line.startswith(b"..")


HEADER_INJECTIONS = {
    "crlf-second-address": ("To", "b@example.com\r\nBcc: c@evil.example"),
    "lf-second-address": ("To", "b@example.com\nc@evil.example"),
    "blank-line-ends-headers": ("Subject", "hi\n\nX-Moved: 1"),
    "nul": ("Subject", "h\x00i"),
}


@pytest.mark.parametrize("header", list(HEADER_INJECTIONS.values()), ids=list(HEADER_INJECTIONS))
async def test_header_injection_in_a_message_is_refused_before_mail(
    mode: Mode, smtpd: SmtpdServer, header: tuple[str, str]
) -> None:
    name, value = header
    msg = email.message.Message()
    msg["From"] = "a@example.org"
    if name != "To":
        msg["To"] = "b@example.com"
    msg[name] = value
    msg.set_payload("body\n")
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(InvalidInputError, match=f"'{name}'"):
            await s.send_message(msg)
        assert not s.closed
        assert (await s.noop()).code == 250
    assert smtpd.recorder.verbs == ["EHLO", "NOOP", "QUIT"]
    assert b"evil.example" not in smtpd.recorder.raw
    assert smtpd.recorder.messages == []


async def test_a_nul_in_raw_message_headers_is_refused(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        for raw in (b"Subject: h\x00i\r\n\r\nbody\r\n", "Subject: h\x00i\n\nbody\n"):
            with pytest.raises(InvalidInputError, match="NUL"):
                await s.sendmail("a@example.org", ["b@example.com"], raw)
    assert smtpd.recorder.verbs == ["EHLO", "QUIT"]
