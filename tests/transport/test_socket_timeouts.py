"""The socket timeout a blocking stream keeps between calls (``settimeout`` costs a system
call, so it is skipped when the value it would set is close enough): whatever was kept, no read
or write may outlast its deadline, and no read may give up before it."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from mailsdk.errors import ReadTimeout
from mailsdk.transport import SocketConnector, TcpConnector

from .conftest import IO_TIMEOUT

T = IO_TIMEOUT


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    theirs.settimeout(T)
    stream = SocketConnector(ours).connect(T)
    with theirs, stream:
        yield stream, theirs


def test_a_kept_timeout_never_exceeds_the_time_left(pair):
    stream, theirs = pair
    theirs.sendall(b"250 one\r\n")
    assert stream.receive(100, 30.0) == b"250 one\r\n"
    with pytest.raises(ReadTimeout) as info:
        stream.receive(100, 0.05)  # 30 s kept would outlast this deadline: it is lowered
    assert isinstance(info.value.__cause__, TimeoutError)
    theirs.sendall(b"250 two\r\n")
    assert stream.receive(100, T) == b"250 two\r\n"  # a read timeout leaves the stream usable


def test_a_kept_timeout_shorter_than_the_deadline_does_not_end_the_read(pair):
    stream, theirs = pair
    theirs.sendall(b"250 one\r\n")
    assert stream.receive(100, 0.2) == b"250 one\r\n"  # keeps 0.2 s on the socket
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        stream.receive(100, 0.35)  # 0.2 s is kept (within half of it): it fires, the read goes on
    # The whole deadline was waited for, not just the timeout kept from the previous read.
    assert time.monotonic() - started >= 0.34


def test_data_arriving_after_the_kept_timeout_fired_is_read(pair):
    stream, theirs = pair
    theirs.sendall(b"250 one\r\n")
    assert stream.receive(100, 1.0) == b"250 one\r\n"  # keeps 1 s on the socket
    late = b"250 late\r\n"
    sender = threading.Timer(1.2, theirs.sendall, (late,))
    sender.start()
    try:
        # 1 s is kept for a 2 s deadline: it fires before the data comes, and the read retries
        # with what is left instead of reporting a timeout.
        received = stream.receive(100, 2.0)
    finally:
        sender.join()
    assert received == late


def test_writes_reuse_the_stall_timeout_and_honour_a_shorter_deadline(pair):
    stream, theirs = pair
    stream.send_all(b"MAIL FROM:<a@b>\r\n", 60.0, stall=5.0)
    stream.send_all(b"RCPT TO:<c@d>\r\n", 60.0, stall=5.0)
    assert theirs.recv(100) == b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
    stream.send_all(b"DATA\r\n", 1.0, stall=5.0)  # less time left than the stall: it rules
    assert theirs.recv(100) == b"DATA\r\n"


def _late_second_echo(conn: socket.socket, server: object) -> None:
    conn.sendall(conn.recv(65536))
    second = conn.recv(65536)
    time.sleep(1.2)
    conn.sendall(second)


def test_a_tls_read_retried_after_the_kept_timeout_fired_gets_the_data(
    make_server, server_context, client_context
):
    server = make_server(_late_second_echo, tls=server_context)
    with TcpConnector("127.0.0.1", server.port, tls_context=client_context).connect(T) as stream:
        stream.send_all(b"NOOP one\r\n", T)
        assert stream.receive(100, 1.0) == b"NOOP one\r\n"  # keeps 1 s on the TLS socket
        stream.send_all(b"NOOP two\r\n", T)
        # The TLS read times out once (no record yet) and is retried within its 2 s deadline.
        assert stream.receive(100, 2.0) == b"NOOP two\r\n"
