"""The protocol-based asyncio stream against real loopback sockets: flow control, deadlines,
EOF and resets, cancellation, and TLS after STARTTLS.

The stream keeps its own receive buffer, one waiter and one re-armed deadline timer; these
tests pin what that must never change: a stalled peer gives a typed timeout (never a hang), a
slow but reading peer does not, a cancelled read loses nothing, and bytes come out in order.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from mailsdk.errors import ConnectionLost, ReadTimeout, WriteTimeout
from mailsdk.transport import AsyncSocketStream, AsyncTcpConnector
from mailsdk.transport._async_protocol import READ_LIMIT

from .conftest import IO_TIMEOUT, LoopbackServer, echo, silent, starttls_server

T = IO_TIMEOUT


async def connect(server: LoopbackServer) -> AsyncSocketStream:
    return await AsyncTcpConnector("127.0.0.1", server.port).connect(T)


async def receive_exactly(stream: AsyncSocketStream, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = await stream.receive(size - len(received), T)
        assert chunk, f"EOF after {len(received)} of {size} bytes"
        received += chunk
    return bytes(received)


def pattern(size: int) -> bytes:
    """Bytes whose order is checkable (a repeated counter)."""
    return b"".join(i.to_bytes(4, "big") for i in range(size // 4))


# --- writing: the stall and total deadlines -------------------------------------------------


async def test_a_peer_that_stops_reading_is_a_write_timeout_on_the_stall_deadline(make_server):
    server = make_server(silent)
    stream = await connect(server)
    started = time.monotonic()
    with pytest.raises(WriteTimeout) as info:
        # The total deadline is far away: only the stall deadline can end this write.
        await stream.send_all(b"x" * (32 * 1024 * 1024), 120.0, stall=0.2)
    assert time.monotonic() - started < 60.0
    assert info.value.phase == "write"
    with pytest.raises(ConnectionLost):  # aborted: part of the data may be on the wire
        await stream.send_all(b"QUIT\r\n", T)
    await stream.aclose()


async def test_a_slow_but_reading_peer_is_no_stall(make_server):
    # More than the kernel's send buffer can absorb (loopback autotunes it up to a few MB),
    # through a 16 KB receive buffer read in small steps: the transfer outlives the stall
    # window several times over, so only progress resetting that window lets it finish.
    size, stall = 16 * 1024 * 1024, 0.5
    data = bytes(range(256)) * (size // 256)

    def slow_reader(conn: socket.socket, server: LoopbackServer) -> None:
        while len(server.received) < size:
            chunk = conn.recv(16384)
            if not chunk:
                return
            server.received += chunk
            time.sleep(0.002)  # slower than loopback, but always taking bytes
        conn.sendall(b"done\r\n")

    server = make_server(slow_reader)
    async with await connect(server) as stream:
        started = time.monotonic()
        await stream.send_all(data, 120.0, stall=stall)
        assert await receive_exactly(stream, 6) == b"done\r\n"
        assert time.monotonic() - started > stall  # the window was outlived, not avoided
    assert bytes(server.received) == data


async def test_a_large_write_drains_and_arrives_in_order(make_server):
    server = make_server(echo)
    data = pattern(2 * 1024 * 1024)
    async with await connect(server) as stream:
        sender = asyncio.create_task(stream.send_all(data, T, stall=T))
        echoed = await receive_exactly(stream, len(data))
        await sender
    assert echoed == data


# --- reading: deadlines, EOF, resets ------------------------------------------------------


async def test_a_short_deadline_after_a_long_one_still_expires(make_server):
    # The stream re-uses one armed timer for later deadlines: an earlier one needs its own.
    server = make_server(echo)
    async with await connect(server) as stream:
        await stream.send_all(b"a\r\n", T)
        assert await stream.receive(10, 60.0) == b"a\r\n"  # leaves a timer armed at +60 s
        with pytest.raises(ReadTimeout):
            # Must expire on its own 0.1 s, long before the armed timer (or wait_for) fires.
            await asyncio.wait_for(stream.receive(10, 0.1), T)
        await stream.send_all(b"b\r\n", T)  # and the stream is still usable
        assert await stream.receive(10, T) == b"b\r\n"


async def test_a_long_deadline_after_a_short_one_is_not_cut_short(make_server):
    def answer_late(conn: socket.socket, server: LoopbackServer) -> None:
        conn.recv(10)
        conn.sendall(b"1\r\n")
        conn.recv(10)
        time.sleep(0.6)  # later than the first read's deadline
        conn.sendall(b"2\r\n")
        server.stop.wait(T)

    server = make_server(answer_late)
    async with await connect(server) as stream:
        await stream.send_all(b"a\r\n", T)
        assert await stream.receive(10, 0.3) == b"1\r\n"  # armed a timer at +0.3 s
        await stream.send_all(b"b\r\n", T)
        assert await stream.receive(10, T) == b"2\r\n"  # that timer must not end this wait


async def test_eof_in_the_middle_of_a_reply_gives_the_bytes_then_end_of_stream(make_server):
    def half_reply(conn: socket.socket, server: LoopbackServer) -> None:
        conn.sendall(b"250-first line\r\n250-sec")
        conn.shutdown(socket.SHUT_WR)
        server.stop.wait(T)

    server = make_server(half_reply)
    async with await connect(server) as stream:
        assert await receive_exactly(stream, 23) == b"250-first line\r\n250-sec"
        assert await stream.receive(100, T) == b""
        assert await stream.receive(100, T) == b""  # and it stays at the end
        await stream.send_all(b"QUIT\r\n", T)  # our side may still write (half close)


async def test_bytes_before_a_reset_are_delivered_then_connection_lost(make_server):
    def reply_then_reset(conn: socket.socket, server: LoopbackServer) -> None:
        conn.recv(10)
        conn.sendall(b"421 bye\r\n")
        time.sleep(0.2)  # the reply is read before the reset arrives
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = make_server(reply_then_reset)
    async with await connect(server) as stream:
        await stream.send_all(b"NOOP\r\n", T)
        await asyncio.to_thread(server.handled.wait, T)
        assert await stream.receive(100, T) == b"421 bye\r\n"
        with pytest.raises(ConnectionLost) as info:
            await stream.receive(100, T)
        assert isinstance(info.value.__cause__, OSError)


async def test_a_flood_is_buffered_boundedly_and_read_in_order(make_server):
    size = 16 * READ_LIMIT
    data = pattern(size)

    def flood(conn: socket.socket, server: LoopbackServer) -> None:
        conn.sendall(data)
        server.stop.wait(T)

    server = make_server(flood)
    async with await connect(server) as stream:
        await asyncio.sleep(0.3)  # the client reads nothing while the server sends
        buffered = len(stream._protocol.buffer)  # the bound is the point
        assert 0 < buffered <= 2 * READ_LIMIT + 256 * 1024
        assert await receive_exactly(stream, size) == data


# --- cancellation ---------------------------------------------------------------------------


async def test_a_cancelled_read_leaves_the_stream_in_step(make_server):
    server = make_server(echo)
    async with await connect(server) as stream:
        reader = asyncio.create_task(stream.receive(100, T))
        await asyncio.sleep(0.05)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        # Nothing was taken from the stream: the next read gets the next bytes, whole.
        await stream.send_all(b"250 ok\r\n", T)
        assert await receive_exactly(stream, 8) == b"250 ok\r\n"


async def test_a_cancelled_read_with_data_on_the_way_loses_nothing(make_server):
    server = make_server(echo)
    async with await connect(server) as stream:
        reader = asyncio.create_task(stream.receive(100, T))
        await asyncio.sleep(0)
        await stream.send_all(b"354 go\r\n", T)
        reader.cancel()  # may race the data: either the task got it, or the buffer keeps it
        try:
            got = await reader
        except asyncio.CancelledError:
            got = b""
        assert got + await receive_exactly(stream, 8 - len(got)) == b"354 go\r\n"


async def test_a_cancelled_write_in_drain_aborts_the_stream(make_server):
    server = make_server(silent)
    stream = await connect(server)
    writer = asyncio.create_task(stream.send_all(b"x" * (32 * 1024 * 1024), T))
    await asyncio.sleep(0.05)
    assert not writer.done()  # waiting for the silent peer to take bytes
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    with pytest.raises(ConnectionLost):
        await stream.send_all(b"QUIT\r\n", T)
    await stream.aclose()


async def test_closing_from_another_task_wakes_a_waiting_reader(make_server):
    server = make_server(silent)
    stream = await connect(server)
    reader = asyncio.create_task(stream.receive(100, 60.0))
    await asyncio.sleep(0.05)
    await stream.aclose()
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(reader, T)


# --- TLS ------------------------------------------------------------------------------------


async def test_after_starttls_a_large_transfer_drains_over_tls(
    make_server, server_context, client_context
):
    server = make_server(starttls_server(server_context))
    async with await connect(server) as plain:
        await plain.send_all(b"STARTTLS\r\n", T)
        assert await receive_exactly(plain, 11) == b"220 ready\r\n"
        tls = await plain.start_tls(client_context, "127.0.0.1", T)
        data = pattern(1024 * 1024)
        async with tls:
            sender = asyncio.create_task(tls.send_all(data, T, stall=T))
            assert await receive_exactly(tls, len(data)) == data
            await sender
            with pytest.raises(ReadTimeout):  # deadlines still work on the TLS transport
                await tls.receive(10, 0.05)
