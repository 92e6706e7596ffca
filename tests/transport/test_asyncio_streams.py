"""asyncio streams against the same real loopback servers as the blocking tests."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl

import pytest

from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    InvalidInputError,
    LocalProtocolError,
    ReadTimeout,
    RemoteProtocolError,
    TLSError,
    WriteTimeout,
)
from mailsdk.transport import (
    AsyncConnector,
    AsyncSocketConnector,
    AsyncSocketStream,
    AsyncStream,
    AsyncTcpConnector,
    AsyncUnixConnector,
    TlsSettings,
    parse_host_port,
)
from mailsdk.transport.tls import ClientCertificate

from .conftest import (
    IO_TIMEOUT,
    KEY_PASSWORD,
    close_at_once,
    echo,
    reset,
    silent,
    starttls_server,
)

T = IO_TIMEOUT


async def roundtrip(
    stream: AsyncSocketStream, payload: bytes = b"EHLO client.example\r\n"
) -> bytes:
    await stream.send_all(payload, T)
    received = b""
    while len(received) < len(payload):
        chunk = await stream.receive(65536, T)
        assert chunk, "unexpected EOF"
        received += chunk
    return received


async def starttls_handshake_ready(server_port: int) -> AsyncSocketStream:
    plain = await AsyncTcpConnector("127.0.0.1", server_port).connect(T)
    await plain.send_all(b"STARTTLS\r\n", T)
    assert await plain.receive(len(b"220 ready\r\n"), T) == b"220 ready\r\n"
    return plain


# --- plain connections ----------------------------------------------------------------------


async def test_tcp_ipv4_send_receive_and_info(make_server):
    server = make_server(echo)
    connector = AsyncTcpConnector("127.0.0.1", server.port)
    assert isinstance(connector, AsyncConnector)
    async with await connector.connect(T) as stream:
        assert isinstance(stream, AsyncStream)
        assert await roundtrip(stream) == b"EHLO client.example\r\n"
        assert stream.info.peer_address == ("127.0.0.1", server.port)
        assert stream.info.transport == "tcp"
        assert stream.info.tls_version is None
        assert not stream.is_tls
        assert stream.channel_binding("tls-server-end-point") is None


@pytest.mark.parametrize("form", ["::1", "[::1]", "parsed"])
async def test_tcp_ipv6_literals(make_server, has_ipv6, form):
    if not has_ipv6:
        pytest.skip("no IPv6 loopback")
    server = make_server(echo, family=socket.AF_INET6)
    if form == "parsed":
        host, port = parse_host_port(f"[::1]:{server.port}", 25)
    else:
        host, port = form, server.port
    async with await AsyncTcpConnector(host, port).connect(T) as stream:
        assert await roundtrip(stream, b"NOOP\r\n") == b"NOOP\r\n"
        assert stream.info.peer_address[:2] == ("::1", server.port)


async def test_source_address_is_bound(make_server):
    server = make_server(echo)
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a local address here")
    connector = AsyncTcpConnector("127.0.0.1", server.port, source_address=("127.0.0.2", 0))
    async with await connector.connect(T) as stream:
        assert stream.info.local_address[0] == "127.0.0.2"


async def test_unix_socket(make_server, unix_path):
    make_server(echo, unix_path=unix_path)
    async with await AsyncUnixConnector(unix_path).connect(T) as stream:
        assert await roundtrip(stream, b"LHLO x\r\n") == b"LHLO x\r\n"
        assert stream.info.transport == "unix"
        assert stream.info.peer_address == unix_path


async def test_existing_socket_is_handed_out_once(make_server):
    server = make_server(echo)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=T)
    connector = AsyncSocketConnector(sock)
    async with await connector.connect(T) as stream:
        assert await roundtrip(stream) == b"EHLO client.example\r\n"
        assert stream.info.transport == "tcp"
    with pytest.raises(LocalProtocolError):
        await connector.connect(T)
    assert sock.fileno() == -1
    with pytest.raises(ConnectError, match="closed"):
        await AsyncSocketConnector(sock).connect(T)


async def test_existing_socketpair_is_unix():
    ours, theirs = socket.socketpair()
    theirs.settimeout(T)
    with theirs:
        async with await AsyncSocketConnector(ours).connect(T) as stream:
            assert stream.info.transport == "unix"
            await stream.send_all(b"220 hi\r\n", T)
            assert await asyncio.to_thread(theirs.recv, 100) == b"220 hi\r\n"
            theirs.sendall(b"250 ok\r\n")
            assert await stream.receive(100, T) == b"250 ok\r\n"


def test_ssl_socket_is_refused_by_async_connector(client_context):
    with socket.socket() as raw:
        sslsock = client_context.wrap_socket(
            raw, server_hostname="x", do_handshake_on_connect=False
        )
        with sslsock, pytest.raises(ConfigurationError):
            AsyncSocketConnector(sslsock)


async def test_receive_returns_empty_bytes_on_clean_eof(make_server):
    server = make_server(close_at_once)
    async with await AsyncTcpConnector("127.0.0.1", server.port).connect(T) as stream:
        assert await stream.receive(1024, T) == b""


async def test_aclose_is_idempotent_and_closed_stream_raises(make_server):
    server = make_server(echo)
    stream = await AsyncTcpConnector("127.0.0.1", server.port).connect(T)
    await stream.aclose()
    await stream.aclose()
    with pytest.raises(ConnectionLost):
        await stream.send_all(b"x", T)
    with pytest.raises(ConnectionLost):
        await stream.receive(10, T)


async def test_max_bytes_must_be_positive(make_server):
    server = make_server(echo)
    async with await AsyncTcpConnector("127.0.0.1", server.port).connect(T) as stream:
        with pytest.raises(InvalidInputError):
            await stream.receive(0, T)


# --- errors and deadlines -------------------------------------------------------------------


async def test_connection_refused_is_connect_error(closed_port):
    with pytest.raises(ConnectError) as info:
        await AsyncTcpConnector("127.0.0.1", closed_port).connect(T)
    assert not isinstance(info.value, ConnectTimeout)
    assert isinstance(info.value.__cause__, OSError)


async def test_connect_timeout_on_full_backlog(full_backlog):
    with pytest.raises(ConnectTimeout) as info:
        await AsyncTcpConnector("127.0.0.1", full_backlog).connect(0.2)
    assert info.value.phase == "connect"


async def test_read_timeout_keeps_stream_usable(make_server):
    server = make_server(silent)
    async with await AsyncTcpConnector("127.0.0.1", server.port).connect(T) as stream:
        with pytest.raises(ReadTimeout) as info:
            await stream.receive(1024, 0.1)
        assert info.value.phase == "read"
        await stream.send_all(b"still open\r\n", T)


async def test_spent_deadline_fails_without_io(make_server):
    server = make_server(echo)
    async with await AsyncTcpConnector("127.0.0.1", server.port).connect(T) as stream:
        with pytest.raises(ReadTimeout):
            await stream.receive(10, 0)
        with pytest.raises(WriteTimeout):
            await stream.send_all(b"x", 0)
        assert await roundtrip(stream, b"ok\r\n") == b"ok\r\n"
    with pytest.raises(ConnectTimeout):
        await AsyncTcpConnector("127.0.0.1", server.port).connect(-1)


async def test_write_timeout_aborts_the_stream(make_server):
    server = make_server(silent)
    stream = await AsyncTcpConnector("127.0.0.1", server.port).connect(T)
    with pytest.raises(WriteTimeout) as info:
        await stream.send_all(b"x" * (64 * 1024 * 1024), 0.3)
    assert info.value.phase == "write"
    with pytest.raises(ConnectionLost):
        await stream.send_all(b"QUIT\r\n", T)
    await stream.aclose()


async def send_until_failure(stream: AsyncSocketStream) -> None:
    for _ in range(200):
        await stream.send_all(b"x" * 65536, T)


async def test_peer_reset_while_sending_is_connection_lost(make_server):
    server = make_server(reset)
    stream = await AsyncTcpConnector("127.0.0.1", server.port).connect(T)
    await stream.send_all(b"!", T)  # the server resets once it sees this byte
    assert await asyncio.to_thread(server.handled.wait, T)
    with pytest.raises(ConnectionLost) as info:
        await send_until_failure(stream)
    assert isinstance(info.value.__cause__, OSError)
    await stream.aclose()


async def test_peer_reset_while_reading_is_connection_lost(make_server):
    server = make_server(reset)
    async with await AsyncTcpConnector("127.0.0.1", server.port).connect(T) as stream:
        await stream.send_all(b"!", T)
        assert await asyncio.to_thread(server.handled.wait, T)
        with pytest.raises(ConnectionLost):
            await stream.receive(10, T)


async def test_cancelled_send_aborts_the_stream(make_server):
    server = make_server(silent)
    stream = await AsyncTcpConnector("127.0.0.1", server.port).connect(T)
    task = asyncio.create_task(stream.send_all(b"x" * (64 * 1024 * 1024), T))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionLost):
        await stream.receive(1, T)


# --- implicit TLS ---------------------------------------------------------------------------


async def test_implicit_tls_verifies_ip_san(make_server, server_context, client_context):
    server = make_server(echo, tls=server_context)
    connector = AsyncTcpConnector("127.0.0.1", server.port, tls_context=client_context)
    async with await connector.connect(T) as stream:
        assert stream.is_tls
        assert stream.info.tls_version in ("TLSv1.2", "TLSv1.3")
        assert stream.info.tls_cipher
        assert await roundtrip(stream) == b"EHLO client.example\r\n"


async def test_wrong_hostname_is_tls_error(make_server, server_context, client_context):
    server = make_server(echo, tls=server_context)
    connector = AsyncTcpConnector(
        "127.0.0.1", server.port, tls_context=client_context, server_hostname="wrong.example.test"
    )
    with pytest.raises(TLSError) as info:
        await connector.connect(T)
    assert "wrong.example.test" in str(info.value)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_untrusted_ca_is_tls_error(make_server, server_context, other_ca):
    server = make_server(echo, tls=server_context)
    context = TlsSettings(ca_data=other_ca.cert_pem.bytes().decode()).create_context()
    with pytest.raises(TLSError) as info:
        await AsyncTcpConnector("127.0.0.1", server.port, tls_context=context).connect(T)
    assert "verification failed" in str(info.value)


async def test_verify_false_accepts_any_certificate(make_server, server_context, other_ca):
    server = make_server(echo, tls=server_context)
    context = TlsSettings(verify=False, ca_data=other_ca.cert_pem.bytes().decode()).create_context()
    connector = AsyncTcpConnector("127.0.0.1", server.port, tls_context=context)
    async with await connector.connect(T) as stream:
        assert await roundtrip(stream) == b"EHLO client.example\r\n"


async def test_tls12_is_the_minimum(
    make_server, tls11_server_context, legacy_client_context, client_context
):
    server = make_server(echo, tls=tls11_server_context)
    try:
        legacy = await AsyncTcpConnector(
            "127.0.0.1", server.port, tls_context=legacy_client_context
        ).connect(T)
    except TLSError as exc:
        pytest.skip(f"local OpenSSL refuses TLS 1.1 even when asked: {exc}")
    assert legacy.info.tls_version in ("TLSv1", "TLSv1.1")
    await legacy.aclose()
    with pytest.raises(TLSError):
        await AsyncTcpConnector("127.0.0.1", server.port, tls_context=client_context).connect(T)


async def test_client_certificate_is_presented(make_server, server_context, ca, client_cert_files):
    server_context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_context)
    server = make_server(echo, tls=server_context)
    certfile, keyfile = client_cert_files
    settings = TlsSettings(
        ca_data=ca.cert_pem.bytes().decode(),
        client_cert=ClientCertificate(certfile=certfile, keyfile=keyfile, password=KEY_PASSWORD),
    )
    connector = AsyncTcpConnector("127.0.0.1", server.port, tls_context=settings.create_context())
    async with await connector.connect(T) as stream:
        await roundtrip(stream)
    assert await asyncio.to_thread(server.handled.wait, T)
    assert server.peer_certs[0]["subjectAltName"] == (("DNS", "client.example.test"),)


async def test_channel_binding_tls_server_end_point(
    make_server, server_context, client_context, server_cert_der
):
    server = make_server(echo, tls=server_context)
    connector = AsyncTcpConnector("127.0.0.1", server.port, tls_context=client_context)
    async with await connector.connect(T) as stream:
        expected = hashlib.sha256(server_cert_der).digest()
        assert stream.channel_binding("tls-server-end-point") == expected
        assert stream.channel_binding("tls-exporter") is None


async def test_aclose_with_dead_tls_peer_is_bounded(make_server, server_context, client_context):
    server = make_server(silent, tls=server_context)
    connector = AsyncTcpConnector("127.0.0.1", server.port, tls_context=client_context)
    stream = await connector.connect(T)
    # The peer never answers the close_notify: aclose aborts after its grace period.
    await asyncio.wait_for(stream.aclose(), T)
    await stream.aclose()
    assert stream.channel_binding("tls-server-end-point") is None


# --- STARTTLS -------------------------------------------------------------------------------


async def test_start_tls_returns_a_new_stream(make_server, server_context, client_context):
    server = make_server(starttls_server(server_context))
    plain = await starttls_handshake_ready(server.port)
    tls = await plain.start_tls(client_context, "127.0.0.1", T)
    assert tls is not plain
    assert tls.is_tls
    assert not plain.is_tls
    assert tls.info.tls_version in ("TLSv1.2", "TLSv1.3")
    assert await roundtrip(tls, b"EHLO again\r\n") == b"EHLO again\r\n"
    with pytest.raises(LocalProtocolError):
        await plain.send_all(b"NOOP\r\n", T)
    with pytest.raises(LocalProtocolError):
        await plain.receive(10, T)
    with pytest.raises(LocalProtocolError):
        await tls.start_tls(client_context, "127.0.0.1", T)
    await plain.aclose()
    await tls.aclose()
    await tls.aclose()


async def test_start_tls_verification_failure_aborts(make_server, server_context, client_context):
    server = make_server(starttls_server(server_context))
    plain = await starttls_handshake_ready(server.port)
    with pytest.raises(TLSError):
        await plain.start_tls(client_context, "wrong.example.test", T)
    with pytest.raises(LocalProtocolError):  # never falls back to plaintext
        await plain.send_all(b"MAIL FROM:<a@b>\r\n", T)
    await plain.aclose()


async def test_start_tls_needs_a_hostname_when_checking(make_server, client_context):
    server = make_server(echo)
    async with await AsyncTcpConnector("127.0.0.1", server.port).connect(T) as plain:
        with pytest.raises(ConfigurationError):
            await plain.start_tls(client_context, None, T)
        assert await roundtrip(plain, b"NOOP\r\n") == b"NOOP\r\n"


async def test_start_tls_refuses_buffered_plaintext(make_server, server_context, client_context):
    # RFC 3207 §4.2 (STARTTLS injection): "250 injected" arrives with the 220 and sits in
    # the StreamReader buffer; it must not be handed out later as if it came over TLS.
    server = make_server(starttls_server(server_context, inject=b"250 injected\r\n"))
    plain = await AsyncTcpConnector("127.0.0.1", server.port).connect(T)
    await plain.send_all(b"STARTTLS\r\n", T)
    received = await plain.receive(len(b"220 ready\r\n"), T)
    assert received == b"220 ready\r\n"
    # Both were sent in one segment, so the rest is already in the reader's buffer.
    with pytest.raises(RemoteProtocolError, match="STARTTLS"):
        await plain.start_tls(client_context, "127.0.0.1", T)
    with pytest.raises(LocalProtocolError):
        await plain.receive(100, T)
    await plain.aclose()


async def test_start_tls_handshake_timeout(make_server, client_context):
    def no_handshake(conn, server):
        conn.recv(100)
        conn.sendall(b"220 ready\r\n")
        server.stop.wait(T * 2)

    server = make_server(no_handshake)
    plain = await starttls_handshake_ready(server.port)
    with pytest.raises(ConnectTimeout) as info:
        await plain.start_tls(client_context, "127.0.0.1", 0.2)
    assert info.value.phase == "tls_handshake"
    await plain.aclose()


async def test_unix_socket_with_tls(make_server, unix_path, server_context, client_context):
    make_server(echo, unix_path=unix_path, tls=server_context)
    with pytest.raises(ConfigurationError):
        AsyncUnixConnector(unix_path, tls_context=client_context)
    connector = AsyncUnixConnector(
        unix_path, tls_context=client_context, server_hostname="localhost"
    )
    async with await connector.connect(T) as stream:
        assert stream.is_tls
        assert stream.info.transport == "unix"
        assert await roundtrip(stream) == b"EHLO client.example\r\n"


async def test_existing_socket_with_failing_tls_is_closed(make_server, server_context, other_ca):
    server = make_server(echo, tls=server_context)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=T)
    context = TlsSettings(ca_data=other_ca.cert_pem.bytes().decode()).create_context()
    with pytest.raises(TLSError):
        await AsyncSocketConnector(sock, tls_context=context, server_hostname="localhost").connect(
            T
        )
    assert sock.fileno() == -1
