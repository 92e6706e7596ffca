"""A delaying TCP relay on loopback: each chunk is forwarded ``delay`` seconds after it arrived.

This kernel has no netem, so a 20 ms round trip is built in user space: every chunk read from
one side is stamped with its arrival time and written to the other side when its delay has
passed, in arrival order (one FIFO per direction, so byte order is kept and a later chunk is
never written before an earlier one). The delay applies per direction, so ``--delay 0.010``
gives a 20 ms round trip. End of stream is forwarded (half-close) after the same delay.

Run as its own process: ``python -m benchmarks.delivery.relay --upstream 127.0.0.1:PORT
--delay 0.010`` prints the port it listens on, then relays until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            try:
                data = await reader.read(1 << 16)
            except OSError:
                data = b""
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (OSError, asyncio.CancelledError):
        sender.cancel()
        raise


async def _serve(upstream: tuple[str, int], delay: float, ready: socket.socket) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*upstream)
        except OSError:
            c_writer.close()
            return
        try:
            await asyncio.gather(
                _forward(c_reader, s_writer, delay),
                _forward(s_reader, c_writer, delay),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            for w in (c_writer, s_writer):
                w.close()

    server = await asyncio.start_server(handle, sock=ready)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port of the real server")
    parser.add_argument("--delay", type=float, default=0.010, help="seconds, each direction")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    print(sock.getsockname()[1], flush=True)
    asyncio.run(_serve((host, int(port)), args.delay, sock))


if __name__ == "__main__":
    main(sys.argv[1:])
