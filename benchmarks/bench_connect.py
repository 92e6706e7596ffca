"""Connection set-up on loopback: mailsdk's Happy Eyeballs connectors vs the standard library.

Run: ``.venv/bin/pytest benchmarks/bench_connect.py --benchmark-only``

``socket.create_connection`` (what smtplib uses) tries addresses one after another with a
blocking ``getaddrinfo`` outside any deadline; mailsdk resolves inside the connect deadline (a
worker thread for names) and races addresses (RFC 8305). These measure what that costs when
nothing is slow: an IP literal (no lookup) and a name ("localhost", looked up each time).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mailsdk.transport import AsyncTcpConnector, TcpConnector


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        server.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_bench_stdlib_create_connection(benchmark: Any, listener: int, host: str) -> None:
    def run() -> None:
        socket.create_connection((host, listener), 5).close()

    benchmark(run)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_bench_tcp_connector(benchmark: Any, listener: int, host: str) -> None:
    def run() -> None:
        TcpConnector(host, listener).connect(5).close()

    benchmark(run)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_bench_async_tcp_connector(benchmark: Any, listener: int, host: str) -> None:
    loop = asyncio.new_event_loop()

    async def once() -> None:
        stream = await AsyncTcpConnector(host, listener).connect(5)
        await stream.aclose()

    try:
        benchmark(lambda: loop.run_until_complete(once()))
    finally:
        loop.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_bench_asyncio_open_connection(benchmark: Any, listener: int, host: str) -> None:
    loop = asyncio.new_event_loop()

    async def once() -> None:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, listener), 5)
        writer.close()
        await writer.wait_closed()

    try:
        benchmark(lambda: loop.run_until_complete(once()))
    finally:
        loop.close()
