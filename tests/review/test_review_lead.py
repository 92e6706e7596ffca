"""Regression tests for review findings fixed in the lead's area (flows, client, config)."""

from __future__ import annotations

import base64
import typing
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

from mailsdk import ClientBuilder, CommandRefused, ConfigurationError, Timeouts
from mailsdk._secret import Secret
from mailsdk.auth import MechanismRegistry, SaslCredentials
from mailsdk.auth.tokens import AccessToken
from mailsdk.errors import AuthenticationFailed, AuthError, LocalProtocolError
from mailsdk.esmtp import parse_ehlo
from mailsdk.flows import AuthRequest, Exchange, authenticate
from mailsdk.flows import Close as CloseAction
from mailsdk.protocol import ClientConnection, Raw
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply

Scripted = Callable[..., ScriptedServer]
RAW = b"Subject: review\r\n\r\nreview\r\n"


def short(server: ScriptedServer) -> ClientBuilder:
    timeouts = Timeouts(connect=2.0, greeting=2.0, command=2.0, tls=2.0, data=2.0, quit=0.5)
    return plain_builder(server.host, server.port).with_timeouts(timeouts)


# -- a 421 inside a pipelined group, then EOF: the 421 is reported, not a bare ConnectionLost ----


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


# -- AUTH failures never carry an echoed secret --------------------------------------------------


def _auth_flow(request: AuthRequest, *ehlo: str) -> typing.Generator[typing.Any, object, str]:
    caps = parse_ehlo(Reply.build(250, "mx.example.com", *ehlo))
    return authenticate(
        request, caps, MechanismRegistry.default(), host="mx.example.com", port=587, tls_active=True
    )


def test_token_echoed_in_the_refusal_is_scrubbed() -> None:
    flow = _auth_flow(AuthRequest(username="alice@example.com", use_token=True), "AUTH XOAUTH2")
    next(flow)  # ObtainToken
    action = flow.send(AccessToken(Secret("ya29.SECRET-TOKEN"), None))
    assert isinstance(action, Exchange)
    sent = action.frames[0].initial_response
    assert sent is not None
    refusal = Reply.build(535, "5.7.8 token ya29.SECRET-TOKEN rejected; you sent " + sent.decode())
    action = flow.send((CommandReplied(action.frames[0], refusal),))
    assert action.force_refresh  # the one retry
    action = flow.send(AccessToken(Secret("ya29.SECRET-TOKEN"), None))
    with pytest.raises(AuthenticationFailed) as info:
        flow.send((CommandReplied(action.frames[0], refusal),))
    exc = info.value
    for text in (str(exc), repr(exc), exc.smtp_error.decode(), repr(exc.args)):
        assert "SECRET-TOKEN" not in text
        assert sent.decode() not in text
    assert exc.smtp_code == 535
    assert "***" in exc.reply.text


def test_password_echoed_in_the_refusal_is_scrubbed() -> None:
    flow = _auth_flow(AuthRequest(username="bob", password=Secret("hunter2-pw")), "AUTH PLAIN")
    action = next(flow)
    with pytest.raises(AuthenticationFailed) as info:
        flow.send(
            (CommandReplied(action.frames[0], Reply.build(535, "5.7.8 bad password hunter2-pw")),)
        )
    assert "hunter2-pw" not in str(info.value)
    assert "hunter2-pw" not in info.value.reply.text


def test_unverified_scram_server_gets_the_connection_closed() -> None:
    """235 without a valid server signature: the client closes instead of talking on."""

    class NoProofExchange:
        server_error = None

        def initial_response(self) -> bytes:
            return b"n,,n=u,r=abc"

        def respond(self, challenge: bytes) -> bytes:
            return b""

        def finish(self, additional: bytes | None) -> None:
            raise AuthError("server signature missing")

    class Mech:
        name = "X-TEST"
        credential_kind = SaslCredentials  # replaced below
        sends_reusable_secret = False
        supports_initial_response = True

        def start(self, credentials: object, context: object) -> NoProofExchange:
            return NoProofExchange()

    from mailsdk.auth import CredentialKind

    Mech.credential_kind = CredentialKind.PASSWORD  # type: ignore[assignment]
    registry = MechanismRegistry.default()
    registry.register(Mech())  # type: ignore[arg-type]
    caps = parse_ehlo(Reply.build(250, "mx", "AUTH X-TEST"))
    flow = authenticate(
        AuthRequest(username="u", password=Secret("pw"), mechanisms=("X-TEST",)),
        caps,
        registry,
        host="mx",
        port=587,
        tls_active=True,
    )
    action = next(flow)
    action = flow.send((CommandReplied(action.frames[0], Reply.build(235, "2.7.0 ok")),))
    assert isinstance(action, CloseAction)
    with pytest.raises(AuthError):
        flow.send(None)


# -- configuration and logging ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["connect", "command", "data", "data_rate"])
def test_nan_timeouts_are_refused(field: str) -> None:
    with pytest.raises(ConfigurationError):
        Timeouts(**{field: float("nan")})


def test_server_text_cannot_forge_wire_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    from mailsdk.client._pump import _printable

    assert _printable(b"hello\r\nS: 250 forged") == "hello\\r\\nS: 250 forged"
    assert _printable("café".encode()) == "café"
    assert "\x1b" not in _printable(b"\x1b[31mred")


def test_raw_line_never_named_in_a_state_error() -> None:
    from mailsdk.protocol import Data, Ehlo, MailFrom, RcptTo

    conn = ClientConnection()
    conn.receive_data(b"220 mx ESMTP\r\n")
    conn.next_event()
    for command, reply in (
        (Ehlo("c.example"), b"250 mx\r\n"),
        (MailFrom("a@example.org"), b"250 ok\r\n"),
        (RcptTo("b@example.com"), b"250 ok\r\n"),
        (Data(), b"354 go\r\n"),
    ):
        conn.send(command)
        conn.receive_data(reply)
        conn.next_event()
    secret = base64.b64encode(b"\0user\0password").decode()
    with pytest.raises(LocalProtocolError) as info:
        conn.send(Raw(secret))  # in BODY only message content may be sent
    assert "BODY" in str(info.value)
    assert secret.upper() not in str(info.value).upper()


# -- token acquisition is bounded -----------------------------------------------------------------


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


def test_msal_requests_are_time_limited() -> None:
    from mailsdk.auth.msal import HTTP_TIMEOUT, MsalAppOnlyProvider

    provider = MsalAppOnlyProvider("contoso.example", "client-id", "secret")
    assert provider._app_kwargs()["timeout"] == HTTP_TIMEOUT
    assert 0 < HTTP_TIMEOUT <= 60
