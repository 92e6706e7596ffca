"""Blocking streams against real loopback servers (TCP v4/v6, unix, given sockets, TLS)."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading

import pytest
import trustme

from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    InvalidInputError,
    LocalProtocolError,
    ReadTimeout,
    TLSError,
    WriteTimeout,
)
from mailsdk.transport import (
    Connector,
    SocketConnector,
    SocketStream,
    Stream,
    TcpConnector,
    TlsSettings,
    UnixConnector,
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


def roundtrip(stream: SocketStream, payload: bytes = b"EHLO client.example\r\n") -> bytes:
    stream.send_all(payload, T)
    received = b""
    while len(received) < len(payload):
        chunk = stream.receive(65536, T)
        assert chunk, "unexpected EOF"
        received += chunk
    return received


# --- plain connections ----------------------------------------------------------------------


def test_tcp_ipv4_send_receive_and_info(make_server):
    server = make_server(echo)
    connector = TcpConnector("127.0.0.1", server.port)
    assert isinstance(connector, Connector)
    with connector.connect(T) as stream:
        assert isinstance(stream, Stream)
        assert roundtrip(stream) == b"EHLO client.example\r\n"
        info = stream.info
        assert info.peer_address == ("127.0.0.1", server.port)
        assert info.local_address[0] == "127.0.0.1"
        assert info.transport == "tcp"
        assert (info.tls_version, info.tls_cipher) == (None, None)
        assert not stream.is_tls
        assert stream.channel_binding("tls-server-end-point") is None


@pytest.mark.parametrize("form", ["::1", "[::1]", "parsed"])
def test_tcp_ipv6_literals(make_server, has_ipv6, form):
    if not has_ipv6:
        pytest.skip("no IPv6 loopback")
    server = make_server(echo, family=socket.AF_INET6)
    if form == "parsed":
        host, port = parse_host_port(f"[::1]:{server.port}", 25)
    else:
        host, port = form, server.port
    with TcpConnector(host, port).connect(T) as stream:
        assert roundtrip(stream, b"NOOP\r\n") == b"NOOP\r\n"
        assert stream.info.peer_address[:2] == ("::1", server.port)


def test_source_address_is_bound(make_server):
    server = make_server(echo)
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a local address here")
    connector = TcpConnector("127.0.0.1", server.port, source_address=("127.0.0.2", 0))
    with connector.connect(T) as stream:
        assert stream.info.local_address[0] == "127.0.0.2"
        roundtrip(stream)


def test_unix_socket(make_server, unix_path):
    server = make_server(echo, unix_path=unix_path)
    with UnixConnector(unix_path).connect(T) as stream:
        assert roundtrip(stream, b"LHLO x\r\n") == b"LHLO x\r\n"
        assert stream.info.transport == "unix"
        assert stream.info.peer_address == unix_path
    server.handled.wait(T)
    assert bytes(server.received) == b"LHLO x\r\n"


def test_existing_tcp_socket_is_handed_out_once(make_server):
    server = make_server(echo)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=T)
    connector = SocketConnector(sock)
    with connector.connect(T) as stream:
        assert roundtrip(stream) == b"EHLO client.example\r\n"
        assert stream.info.transport == "tcp"
    with pytest.raises(LocalProtocolError):
        connector.connect(T)
    assert sock.fileno() == -1  # the stream owned and closed the socket
    with pytest.raises(ConnectError, match="closed"):
        SocketConnector(sock).connect(T)


def test_existing_socketpair_is_unix():
    ours, theirs = socket.socketpair()
    theirs.settimeout(T)
    with theirs, SocketConnector(ours).connect(T) as stream:
        assert stream.info.transport == "unix"
        stream.send_all(b"220 hi\r\n", T)
        assert theirs.recv(100) == b"220 hi\r\n"
        theirs.sendall(b"250 ok\r\n")
        assert stream.receive(100, T) == b"250 ok\r\n"


def test_receive_returns_empty_bytes_on_clean_eof(make_server):
    server = make_server(close_at_once)
    with TcpConnector("127.0.0.1", server.port).connect(T) as stream:
        assert stream.receive(1024, T) == b""


def test_close_is_idempotent_and_closed_stream_raises(make_server):
    server = make_server(echo)
    stream = TcpConnector("127.0.0.1", server.port).connect(T)
    stream.close()
    stream.close()
    with pytest.raises(ConnectionLost):
        stream.send_all(b"x", T)
    with pytest.raises(ConnectionLost):
        stream.receive(10, T)


def test_max_bytes_must_be_positive(make_server):
    server = make_server(echo)
    with (
        TcpConnector("127.0.0.1", server.port).connect(T) as stream,
        pytest.raises(InvalidInputError),
    ):
        stream.receive(0, T)


@pytest.mark.parametrize(("host", "port"), [("", 25), ("example.test", 0), ("x", 70000)])
def test_connector_rejects_bad_arguments(host, port):
    with pytest.raises(InvalidInputError):
        TcpConnector(host, port)


# --- errors and deadlines -------------------------------------------------------------------


def test_connection_refused_is_connect_error(closed_port):
    with pytest.raises(ConnectError) as info:
        TcpConnector("127.0.0.1", closed_port).connect(T)
    assert not isinstance(info.value, ConnectTimeout)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert f"127.0.0.1:{closed_port}" in str(info.value)


def test_connect_timeout_on_full_backlog(full_backlog):
    with pytest.raises(ConnectTimeout) as info:
        TcpConnector("127.0.0.1", full_backlog).connect(0.2)
    assert info.value.phase == "connect"
    assert isinstance(info.value, TimeoutError)


def test_read_timeout_keeps_stream_usable(make_server):
    server = make_server(silent)
    with TcpConnector("127.0.0.1", server.port).connect(T) as stream:
        with pytest.raises(ReadTimeout) as info:
            stream.receive(1024, 0.1)
        assert info.value.phase == "read"
        assert isinstance(info.value.__cause__, TimeoutError)
        stream.send_all(b"still open\r\n", T)


def test_spent_deadline_fails_without_io(make_server):
    server = make_server(echo)
    with TcpConnector("127.0.0.1", server.port).connect(T) as stream:
        with pytest.raises(ReadTimeout):
            stream.receive(10, 0)
        with pytest.raises(WriteTimeout):
            stream.send_all(b"x", -1.0)
        assert roundtrip(stream, b"ok\r\n") == b"ok\r\n"  # nothing was written: still usable
    with pytest.raises(ConnectTimeout):
        TcpConnector("127.0.0.1", server.port).connect(0)


def test_write_timeout_closes_the_stream(make_server):
    server = make_server(silent)  # never reads: the socket buffers fill up
    stream = TcpConnector("127.0.0.1", server.port).connect(T)
    with pytest.raises(WriteTimeout) as info:
        stream.send_all(b"x" * (64 * 1024 * 1024), 0.3)
    assert info.value.phase == "write"
    with pytest.raises(ConnectionLost):  # a half-written stream is never reused silently
        stream.send_all(b"QUIT\r\n", T)


def send_until_failure(stream: SocketStream) -> None:
    for _ in range(200):
        stream.send_all(b"x" * 65536, T)


def test_peer_reset_while_sending_is_connection_lost(make_server):
    server = make_server(reset)
    stream = TcpConnector("127.0.0.1", server.port).connect(T)
    stream.send_all(b"!", T)  # the server resets once it sees this byte
    assert server.handled.wait(T)
    with pytest.raises(ConnectionLost) as info:
        send_until_failure(stream)
    assert isinstance(info.value.__cause__, OSError)
    stream.close()


def test_peer_reset_while_reading_is_connection_lost(make_server):
    server = make_server(reset)
    with TcpConnector("127.0.0.1", server.port).connect(T) as stream:
        stream.send_all(b"!", T)
        assert server.handled.wait(T)
        with pytest.raises(ConnectionLost):
            stream.receive(10, T)


# --- implicit TLS ---------------------------------------------------------------------------


def test_implicit_tls_verifies_ip_san(make_server, server_context, client_context):
    server = make_server(echo, tls=server_context)
    connector = TcpConnector("127.0.0.1", server.port, tls_context=client_context)
    with connector.connect(T) as stream:
        assert stream.is_tls
        assert stream.info.tls_version in ("TLSv1.2", "TLSv1.3")
        assert stream.info.tls_cipher
        assert roundtrip(stream) == b"EHLO client.example\r\n"


def test_implicit_tls_with_server_hostname(make_server, server_context, client_context):
    server = make_server(echo, tls=server_context)
    connector = TcpConnector(
        "127.0.0.1", server.port, tls_context=client_context, server_hostname="mail.example.test"
    )
    with connector.connect(T) as stream:
        assert roundtrip(stream) == b"EHLO client.example\r\n"


def test_wrong_hostname_is_tls_error(make_server, server_context, client_context):
    server = make_server(echo, tls=server_context)
    connector = TcpConnector(
        "127.0.0.1", server.port, tls_context=client_context, server_hostname="wrong.example.test"
    )
    with pytest.raises(TLSError) as info:
        connector.connect(T)
    assert "wrong.example.test" in str(info.value)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


def test_untrusted_ca_is_tls_error(make_server, server_context, other_ca):
    server = make_server(echo, tls=server_context)
    context = TlsSettings(ca_data=other_ca.cert_pem.bytes().decode()).create_context()
    with pytest.raises(TLSError) as info:
        TcpConnector("127.0.0.1", server.port, tls_context=context).connect(T)
    assert "verification failed" in str(info.value)


def test_verify_false_accepts_any_certificate(make_server, server_context, other_ca):
    server = make_server(echo, tls=server_context)
    context = TlsSettings(verify=False, ca_data=other_ca.cert_pem.bytes().decode()).create_context()
    connector = TcpConnector("127.0.0.1", server.port, tls_context=context, server_hostname="x")
    with connector.connect(T) as stream:
        assert roundtrip(stream) == b"EHLO client.example\r\n"


def test_tls12_is_the_minimum(
    make_server, tls11_server_context, legacy_client_context, client_context
):
    server = make_server(echo, tls=tls11_server_context)
    try:  # control: the old protocol works at all with this OpenSSL
        with TcpConnector("127.0.0.1", server.port, tls_context=legacy_client_context).connect(
            T
        ) as legacy:
            version = legacy.info.tls_version
    except TLSError as exc:
        pytest.skip(f"local OpenSSL refuses TLS 1.1 even when asked: {exc}")
    assert version in ("TLSv1", "TLSv1.1")
    with pytest.raises(TLSError):
        TcpConnector("127.0.0.1", server.port, tls_context=client_context).connect(T)


def test_client_certificate_is_presented(make_server, server_context, ca, client_cert_files):
    server_context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_context)
    server = make_server(echo, tls=server_context)
    certfile, keyfile = client_cert_files
    settings = TlsSettings(
        ca_data=ca.cert_pem.bytes().decode(),
        client_cert=ClientCertificate(certfile=certfile, keyfile=keyfile, password=KEY_PASSWORD),
    )
    assert KEY_PASSWORD not in repr(settings)
    connector = TcpConnector("127.0.0.1", server.port, tls_context=settings.create_context())
    with connector.connect(T) as stream:
        roundtrip(stream)
    assert server.handled.wait(T)
    assert server.errors == []
    assert server.peer_certs[0]["subjectAltName"] == (("DNS", "client.example.test"),)


def test_channel_binding_tls_server_end_point(
    make_server, server_context, client_context, server_cert_der
):
    server = make_server(echo, tls=server_context)
    with TcpConnector("127.0.0.1", server.port, tls_context=client_context).connect(T) as stream:
        # trustme signs with ECDSA-SHA256, so RFC 5929 §4.1 says SHA-256 of the DER.
        assert (
            stream.channel_binding("tls-server-end-point")
            == hashlib.sha256(server_cert_der).digest()
        )
        assert stream.channel_binding("tls-exporter") is None
        assert stream.channel_binding("tls-unique") is None


def test_closing_tls_stream_with_dead_peer_does_not_block(
    make_server, server_context, client_context
):
    server = make_server(silent, tls=server_context)
    stream = TcpConnector("127.0.0.1", server.port, tls_context=client_context).connect(T)
    stream.close()
    stream.close()
    assert stream.channel_binding("tls-server-end-point") is None


# --- STARTTLS -------------------------------------------------------------------------------


def test_start_tls_returns_a_new_stream(make_server, server_context, client_context):
    server = make_server(starttls_server(server_context))
    plain = TcpConnector("127.0.0.1", server.port).connect(T)
    plain.send_all(b"STARTTLS\r\n", T)
    assert plain.receive(len(b"220 ready\r\n"), T) == b"220 ready\r\n"
    tls = plain.start_tls(client_context, "127.0.0.1", T)
    assert tls is not plain
    assert tls.is_tls
    assert not plain.is_tls
    assert tls.info.peer_address == plain.info.peer_address
    assert roundtrip(tls, b"EHLO again\r\n") == b"EHLO again\r\n"
    with pytest.raises(LocalProtocolError):
        plain.send_all(b"NOOP\r\n", T)
    with pytest.raises(LocalProtocolError):
        plain.receive(10, T)
    with pytest.raises(LocalProtocolError):
        tls.start_tls(client_context, "127.0.0.1", T)
    plain.close()
    tls.close()
    tls.close()


def test_start_tls_verification_failure_closes(make_server, server_context, client_context):
    server = make_server(starttls_server(server_context))
    plain = TcpConnector("127.0.0.1", server.port).connect(T)
    plain.send_all(b"STARTTLS\r\n", T)
    plain.receive(100, T)
    with pytest.raises(TLSError):
        plain.start_tls(client_context, "wrong.example.test", T)
    with pytest.raises(LocalProtocolError):  # never falls back to plaintext
        plain.send_all(b"MAIL FROM:<a@b>\r\n", T)


def test_start_tls_needs_a_hostname_when_checking(make_server, client_context):
    server = make_server(echo)
    with TcpConnector("127.0.0.1", server.port).connect(T) as plain:
        with pytest.raises(ConfigurationError):
            plain.start_tls(client_context, None, T)
        assert roundtrip(plain, b"NOOP\r\n")  # untouched by the refused call


def test_start_tls_injected_plaintext_breaks_the_handshake(
    make_server, server_context, client_context
):
    # RFC 3207 §4.2 (STARTTLS injection): bytes sent before the handshake must never be read
    # as TLS-protected data.
    server = make_server(starttls_server(server_context, inject=b"250 injected\r\n"))
    plain = TcpConnector("127.0.0.1", server.port).connect(T)
    plain.send_all(b"STARTTLS\r\n", T)
    assert plain.receive(len(b"220 ready\r\n"), T) == b"220 ready\r\n"
    with pytest.raises(TLSError):
        plain.start_tls(client_context, "127.0.0.1", T)


def test_start_tls_handshake_timeout(make_server, client_context):
    ready = threading.Event()

    def no_handshake(conn, server):
        conn.recv(100)
        conn.sendall(b"220 ready\r\n")
        ready.set()
        server.stop.wait(T * 2)

    server = make_server(no_handshake)
    plain = TcpConnector("127.0.0.1", server.port).connect(T)
    plain.send_all(b"STARTTLS\r\n", T)
    plain.receive(100, T)
    with pytest.raises(ConnectTimeout) as info:
        plain.start_tls(client_context, "127.0.0.1", 0.2)
    assert info.value.phase == "tls_handshake"


def test_unix_socket_with_tls(make_server, unix_path, server_context, client_context):
    make_server(echo, unix_path=unix_path, tls=server_context)
    with pytest.raises(ConfigurationError):
        UnixConnector(unix_path, tls_context=client_context)
    connector = UnixConnector(unix_path, tls_context=client_context, server_hostname="localhost")
    with connector.connect(T) as stream:
        assert stream.is_tls
        assert stream.info.transport == "unix"
        assert roundtrip(stream) == b"EHLO client.example\r\n"


def test_existing_socket_with_tls(make_server, server_context, client_context):
    server = make_server(echo, tls=server_context)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=T)
    connector = SocketConnector(sock, tls_context=client_context, server_hostname="127.0.0.1")
    with connector.connect(T) as stream:
        assert stream.is_tls
        assert roundtrip(stream) == b"EHLO client.example\r\n"


def test_untrusted_existing_socket_tls_closes_socket(
    make_server, server_context, other_ca: trustme.CA
):
    server = make_server(echo, tls=server_context)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=T)
    context = TlsSettings(ca_data=other_ca.cert_pem.bytes().decode()).create_context()
    with pytest.raises(TLSError):
        SocketConnector(sock, tls_context=context, server_hostname="localhost").connect(T)
    assert sock.fileno() == -1
