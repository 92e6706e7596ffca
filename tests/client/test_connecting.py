"""How sessions connect: pluggable connectors (plaintext; the client starts TLS), audit events,
Happy Eyeballs and resolution through the client, both modes."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import typing
from collections.abc import Callable, Iterator

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.smtpd import SmtpdServer

from mailsdk import ClientBuilder, ConfigurationError, ConnectError
from mailsdk.transport import (
    AsyncSocketStream,
    AsyncTcpConnector,
    SocketStream,
    TcpConnector,
    TlsSettings,
)

SmtpdFactory = Callable[..., SmtpdServer]
RAW = b"Subject: connect\r\n\r\nbody\r\n"


class CountingConnector:
    """A blocking connector of the user's own: a plain TCP connect, counted."""

    def __init__(self, host: str, port: int) -> None:
        self.inner = TcpConnector(host, port)
        self.calls = 0
        self.streams: list[SocketStream] = []

    def connect(self, timeout: float | None) -> SocketStream:
        self.calls += 1
        stream = self.inner.connect(timeout)
        assert not stream.is_tls  # connectors hand over plaintext
        self.streams.append(stream)
        return stream


class AsyncCountingConnector:
    """The asyncio twin of :class:`CountingConnector`."""

    def __init__(self, host: str, port: int) -> None:
        self.inner = AsyncTcpConnector(host, port)
        self.calls = 0

    async def connect(self, timeout: float | None) -> AsyncSocketStream:
        self.calls += 1
        stream = await self.inner.connect(timeout)
        assert not stream.is_tls
        return stream


def counting(mode: Mode, port: int) -> CountingConnector | AsyncCountingConnector:
    # The endpoint names another port on purpose: only the connector decides where to go.
    cls = AsyncCountingConnector if mode.is_async else CountingConnector
    return cls("127.0.0.1", port)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_custom_connector_gets_tls_from_the_client(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
    tls: str,
) -> None:
    if tls == "implicit":
        server = smtpd_factory(implicit_tls=server_ssl_context)
    else:
        server = smtpd_factory(starttls=server_ssl_context, require_starttls=True)
    connector = counting(mode, server.port)
    b = (
        ClientBuilder.smtp("localhost", 9)  # the name TLS verifies; port 9 is never dialled
        .with_tls(tls, settings=client_tls)  # type: ignore[arg-type]
        .with_timeouts(TEST_TIMEOUT)
        .with_connector(connector)
    )
    async with mode.session(b) as session:
        assert session.tls is not None
        await session.sendmail("a@example.org", "b@example.com", RAW)
    async with mode.session(b) as session:  # one connect() per session
        assert session.tls is not None
    assert connector.calls == 2
    assert server.recorder.messages[0].content == RAW


async def test_the_wrong_kind_of_connector_is_a_configuration_error(mode: Mode) -> None:
    wrong = CountingConnector("127.0.0.1", 9) if mode.is_async else AsyncCountingConnector("h", 9)
    b = plain_builder("localhost", 25).with_connector(wrong)
    with pytest.raises(ConfigurationError, match="connector"):
        mode.build(b)


# --- audit events ---------------------------------------------------------------------------

Events = list[tuple[str, tuple[typing.Any, ...]]]


class _AuditRecorder:
    """One process-wide hook (``sys.addaudithook`` cannot be undone) that records mailsdk.*
    events only while a test holds the :func:`audit` fixture."""

    def __init__(self) -> None:
        self.events: Events | None = None
        self.installed = False
        self.lock = threading.Lock()

    def __call__(self, event: str, args: tuple[typing.Any, ...]) -> None:
        events = self.events
        if events is not None and event.startswith("mailsdk."):
            events.append((event, args))


_RECORDER = _AuditRecorder()


@pytest.fixture
def audit() -> Iterator[Events]:
    """The mailsdk.* audit events raised during the test."""
    with _RECORDER.lock:
        if not _RECORDER.installed:
            sys.addaudithook(_RECORDER)
            _RECORDER.installed = True
        _RECORDER.events = []
        try:
            yield _RECORDER.events
        finally:
            _RECORDER.events = None


async def test_connect_and_send_raise_audit_events(
    mode: Mode, smtpd: SmtpdServer, audit: Events
) -> None:
    client = mode.build(plain_builder(smtpd.host, smtpd.port))
    session = await mode.call(client.connect)
    await mode.call(session.sendmail, "a@example.org", "b@example.com", RAW)
    await mode.call(session.quit)
    connects = [args for event, args in audit if event == "mailsdk.connect"]
    assert connects == [(client, smtpd.host, smtpd.port)]
    sent = [args for event, args in audit if event == "mailsdk.send"]
    data = b"".join(bytes(args[1]) for args in sent)
    assert b"MAIL FROM:<a@example.org>" in data
    assert RAW.split(b"\r\n\r\n")[1] in data
    assert data.endswith(b"QUIT\r\n")
    assert all(args[0].info.peer_address[1] == smtpd.port for args in sent)
    assert audit[0][0] == "mailsdk.connect"  # before anything is sent


async def test_an_audit_hook_can_veto_a_connection(
    mode: Mode, smtpd: SmtpdServer, audit: Events
) -> None:
    class Vetoed(Exception):
        pass

    def veto(event: str, args: tuple[typing.Any, ...]) -> None:
        if event == "mailsdk.connect" and args[2] == smtpd.port and _RECORDER.events is not None:
            raise Vetoed

    sys.addaudithook(veto)  # scoped by the port and the fixture: inert after this test
    with pytest.raises(Vetoed):
        await mode.connect(plain_builder(smtpd.host, smtpd.port))
    assert smtpd.recorder.commands == []


# --- Happy Eyeballs and resolution through the client ---------------------------------------


def _localhost_has_both_families() -> bool:
    try:
        families = {i[0] for i in socket.getaddrinfo("localhost", 25, type=socket.SOCK_STREAM)}
    except OSError:
        return False
    return {socket.AF_INET, socket.AF_INET6} <= families


async def test_a_dual_stack_name_reaches_a_v4_only_server(mode: Mode, smtpd: SmtpdServer) -> None:
    if not _localhost_has_both_families():
        pytest.skip("localhost does not resolve to both ::1 and 127.0.0.1 here")
    async with mode.session(plain_builder("localhost", smtpd.port)) as session:
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert smtpd.recorder.messages[0].content == RAW


async def test_a_refused_dual_stack_name_names_both_addresses(mode: Mode) -> None:
    if not _localhost_has_both_families():
        pytest.skip("localhost does not resolve to both ::1 and 127.0.0.1 here")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectError) as caught:
        await mode.connect(plain_builder("localhost", port))
    addresses = [address for address, _ in caught.value.attempts]
    assert f"127.0.0.1:{port}" in addresses and f"[::1]:{port}" in addresses


@pytest.fixture
def v6_blackhole() -> Iterator[int]:
    """A ::1 port whose accept queue is full: a connect to it hangs (never refused)."""
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            sock = socket.socket(socket.AF_INET6)
            sock.settimeout(0.2)
            try:
                sock.connect(("::1", port))
            except TimeoutError:
                sock.close()
                break
            fillers.append(sock)
        else:
            pytest.skip("the OS accepts connections beyond the listen backlog")
        yield port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


async def test_a_session_over_happy_eyeballs_skips_a_blackholed_v6_address(
    mode: Mode, smtpd: SmtpdServer, v6_blackhole: int
) -> None:
    answers = [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", v6_blackhole, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", smtpd.port)),
    ]

    def resolver(host: str, port: int) -> list[typing.Any]:
        return answers

    cls = AsyncTcpConnector if mode.is_async else TcpConnector
    b = plain_builder("mail.test", 25).with_connector(cls("mail.test", 25, resolver=resolver))
    async with mode.session(b) as session:  # a sequential dialer would time out (3 s)
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert smtpd.recorder.messages[0].content == RAW
