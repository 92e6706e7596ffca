"""XOAUTH2 through the clients with token providers (scripted server over STARTTLS), both modes.

The driver's ``ObtainToken`` path: a blocking provider (called directly by the blocking client,
through ``asyncio.to_thread`` by the asyncio one), an async provider, and the single retry
with ``force_refresh=True`` after the server refuses a cached token (RFC 7628 §3.2.2 error
challenge). The token never reaches the wire log.
"""

from __future__ import annotations

import base64
import logging
import ssl
import threading
from collections.abc import Callable

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode
from tests._support.scripted_server import (
    Expect,
    ScriptedServer,
    Send,
    StartTls,
    WaitClose,
    ehlo_reply,
)

from mailsdk import AuthenticationFailed, ClientBuilder, Secret
from mailsdk.auth.tokens import AccessToken
from mailsdk.transport import TlsSettings

Scripted = Callable[..., ScriptedServer]
USER = "me@example.com"


class RecordingProvider:
    """A blocking token provider that hands out ``tokens`` in turn and records each call."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls: list[bool] = []
        self.threads: list[int] = []

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        self.calls.append(force_refresh)
        self.threads.append(threading.get_ident())
        return AccessToken(Secret(self.tokens[min(len(self.calls), len(self.tokens)) - 1]), None)


class AsyncRecordingProvider(RecordingProvider):
    async def get_token(self, *, force_refresh: bool = False) -> AccessToken:  # type: ignore[override]
        return RecordingProvider.get_token(self, force_refresh=force_refresh)


def xoauth2(token: str) -> bytes:
    return b"AUTH XOAUTH2 " + base64.b64encode(
        f"user={USER}\x01auth=Bearer {token}\x01\x01".encode()
    )


def opening(context: ssl.SSLContext) -> list[object]:
    return [
        Send(b"220 mx.test ESMTP\r\n"),
        Expect(b"EHLO"),
        Send(ehlo_reply("STARTTLS")),
        Expect(b"STARTTLS"),
        Send(b"220 go ahead\r\n"),
        StartTls(context),
        Expect(b"EHLO"),
        Send(ehlo_reply("AUTH XOAUTH2 OAUTHBEARER")),
    ]


def builder_for(server: ScriptedServer, client_tls: TlsSettings, provider: object) -> ClientBuilder:
    return (
        ClientBuilder.smtp(server.host, server.port)
        .with_tls("starttls", settings=client_tls, server_hostname="localhost")
        .with_token_provider(USER, provider, mechanisms=["XOAUTH2"])  # type: ignore[arg-type]
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )


QUIT = [Expect(b"QUIT"), Send(b"221 bye\r\n"), WaitClose()]


async def test_xoauth2_with_a_blocking_provider(
    mode: Mode,
    scripted: Scripted,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailsdk.wire")
    server = scripted(
        [*opening(server_ssl_context), Expect(xoauth2("tok-1")), Send(b"235 2.7.0 ok\r\n"), *QUIT]
    )
    provider = RecordingProvider("tok-1")
    async with mode.session(builder_for(server, client_tls, provider)) as s:
        assert s.mechanism == "XOAUTH2"
    server.check()
    assert provider.calls == [False]
    if mode.is_async:
        # msal/google-auth style blocking providers are kept off the event loop
        assert provider.threads[0] != threading.get_ident()
    assert "tok-1" not in caplog.text
    assert xoauth2("tok-1").split()[-1].decode() not in caplog.text
    assert "C: AUTH XOAUTH2" in caplog.text


async def test_xoauth2_with_an_async_provider(
    scripted: Scripted, server_ssl_context: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    server = scripted(
        [*opening(server_ssl_context), Expect(xoauth2("async-tok")), Send(b"235 ok\r\n"), *QUIT]
    )
    provider = AsyncRecordingProvider("async-tok")
    builder = builder_for(server, client_tls, provider)
    async with await builder.build_async().connect() as session:
        assert session.mechanism == "XOAUTH2"
    server.check()
    assert provider.calls == [False]


async def test_rejected_token_is_refreshed_once(
    mode: Mode, scripted: Scripted, server_ssl_context: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    error = base64.b64encode(
        b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    )
    server = scripted(
        [
            *opening(server_ssl_context),
            Expect(xoauth2("stale")),
            Send(b"334 " + error + b"\r\n"),
            Expect(b"\r\n"),  # the client acknowledges the error challenge with an empty line
            Send(b"535 5.7.8 token expired\r\n"),
            Expect(xoauth2("fresh")),
            Send(b"235 2.7.0 ok\r\n"),
            *QUIT,
        ]
    )
    provider = RecordingProvider("stale", "fresh")
    async with mode.session(builder_for(server, client_tls, provider)) as s:
        assert s.mechanism == "XOAUTH2"
    server.check()
    assert provider.calls == [False, True]


async def test_refused_fresh_token_is_authentication_failed(
    mode: Mode, scripted: Scripted, server_ssl_context: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    server = scripted(
        [
            *opening(server_ssl_context),
            Expect(xoauth2("t1-first-token")),
            Send(b"535 5.7.3 Authentication unsuccessful\r\n"),
            Expect(xoauth2("t2-second-token")),
            Send(b"535 5.7.3 Authentication unsuccessful\r\n"),
            *QUIT,
        ]
    )
    provider = RecordingProvider("t1-first-token", "t2-second-token")
    with pytest.raises(AuthenticationFailed) as info:
        await mode.connect(builder_for(server, client_tls, provider))
    server.check()
    assert provider.calls == [False, True]  # exactly one retry
    assert info.value.mechanism == "XOAUTH2"
    assert info.value.hint
    assert "second-token" not in str(info.value)
