"""Fixtures for the transport tests: a session trustme CA and tiny threaded loopback servers.

Every server socket and every accepted connection has a timeout, and every server thread is
stopped and joined at teardown, so no test can hang on a server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import tempfile
import threading
import typing
from collections.abc import Callable, Iterator

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from mailsdk.transport import TlsSettings

IO_TIMEOUT = 5.0  # any single blocking server/test socket operation
KEY_PASSWORD = "correct horse battery staple"

Handler = Callable[[socket.socket, "LoopbackServer"], None]


class LoopbackServer:
    """A threaded server on 127.0.0.1 / ::1 / a unix path that runs ``handler`` per connection.

    Connections are handled one after another in the server thread. With ``tls`` the accepted
    socket is wrapped (implicit TLS) before the handler runs; handshake errors are recorded.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        family: socket.AddressFamily = socket.AF_INET,
        unix_path: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.tls = tls
        self.errors: list[BaseException] = []
        self.peer_certs: list[typing.Any] = []
        self.received = bytearray()
        self.stop = threading.Event()
        self.handled = threading.Event()  # set after each handler returns
        self.listener = socket.socket(socket.AF_UNIX if unix_path else family, socket.SOCK_STREAM)
        self.listener.settimeout(0.05)  # the accept loop polls ``stop``
        if unix_path:
            self.listener.bind(unix_path)
        else:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.listener.listen(8)
        self.address: typing.Any = self.listener.getsockname()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(IO_TIMEOUT)
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                    self.peer_certs.append(conn.getpeercert())
                self.handler(conn, self)
            except Exception as exc:  # recorded, asserted by the tests that care
                self.errors.append(exc)
            finally:
                conn.close()
                self.handled.set()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(IO_TIMEOUT)
        assert not self.thread.is_alive(), "server thread did not stop"


# --- handlers -------------------------------------------------------------------------------


def echo(conn: socket.socket, server: LoopbackServer) -> None:
    """Send back everything until EOF."""
    while data := conn.recv(65536):
        server.received += data
        conn.sendall(data)


def silent(conn: socket.socket, server: LoopbackServer) -> None:
    """Accept and never send nor read, until the test ends."""
    server.stop.wait(IO_TIMEOUT * 2)


def close_at_once(conn: socket.socket, server: LoopbackServer) -> None:
    """Close cleanly (FIN) right after accepting."""


def reset(conn: socket.socket, server: LoopbackServer) -> None:
    """After the client's first byte, abort the connection with a TCP RST (SO_LINGER 0)."""
    conn.recv(1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def starttls_server(context: ssl.SSLContext, *, inject: bytes = b"") -> Handler:
    """Plaintext until ``STARTTLS\\r\\n``; reply ``220 ready``(+``inject``), wrap, then echo."""

    def handler(conn: socket.socket, server: LoopbackServer) -> None:
        buffer = b""
        while b"STARTTLS\r\n" not in buffer:
            data = conn.recv(1024)
            if not data:
                return
            buffer += data
        conn.sendall(b"220 ready\r\n" + inject)
        tls = context.wrap_socket(conn, server_side=True)
        server.peer_certs.append(tls.getpeercert())
        echo(tls, server)
        tls.close()

    return handler


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    """A CA nobody trusts."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "mail.example.test", "127.0.0.1", "::1")


@pytest.fixture(scope="session")
def server_cert_der(server_cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(server_cert.cert_chain_pems[0].bytes().decode())


@pytest.fixture(scope="session")
def workdir() -> Iterator[str]:
    """A short temporary directory (unix socket paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="mst-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def client_cert_files(ca: trustme.CA, workdir: str) -> tuple[str, str]:
    """A client certificate and its key encrypted with ``KEY_PASSWORD`` (cert path, key path)."""
    leaf = ca.issue_cert("client.example.test")
    cert_path = os.path.join(workdir, "client.pem")
    key_path = os.path.join(workdir, "client.key")
    leaf.cert_chain_pems[0].write_to_path(cert_path)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
    )
    with open(key_path, "wb") as fh:
        fh.write(encrypted)
    return cert_path, key_path


@pytest.fixture
def server_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """The client context built by mailsdk itself, trusting the test CA."""
    return TlsSettings(ca_data=ca.cert_pem.bytes().decode()).create_context()


@pytest.fixture
def make_server() -> Iterator[Callable[..., LoopbackServer]]:
    servers: list[LoopbackServer] = []

    def factory(handler: Handler, **kwargs: typing.Any) -> LoopbackServer:
        server = LoopbackServer(handler, **kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()


@pytest.fixture
def unix_path(workdir: str, request: pytest.FixtureRequest) -> Iterator[str]:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no unix-domain sockets")
    path = os.path.join(workdir, f"s{abs(hash(request.node.nodeid)) % 10**8}.sock")
    yield path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@pytest.fixture(scope="session")
def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connecting is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a new connect hangs; skip if impossible."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            sock = socket.socket()
            sock.settimeout(0.2)
            try:
                sock.connect(("127.0.0.1", port))
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


@pytest.fixture
def tls11_server_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server that speaks at most TLS 1.1 (DeprecationWarnings of the old versions muted)."""
    import warnings

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError) as exc:
            pytest.skip(f"local OpenSSL cannot configure TLS 1.1: {exc}")
    return context


@pytest.fixture
def legacy_client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client that would accept TLS 1.0/1.1 (the control for the TLS 1.2 minimum test)."""
    import warnings

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1
    return context
