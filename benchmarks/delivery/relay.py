"""A delaying TCP relay on loopback: each chunk is forwarded ``delay`` seconds after it arrived.

This kernel has no netem, so a 20 ms round trip is built in user space: every chunk read from
one side is stamped with its arrival time and written to the other side when its delay has
passed, in arrival order (one FIFO per direction, so byte order is kept and a later chunk is
never written before an earlier one). The delay applies per direction, so ``--delay 0.010``
gives a 20 ms round trip. End of stream is forwarded (half-close) after the same delay.

Each direction of each connection is a reader thread and a writer thread: ``time.sleep`` wakes
within tens of microseconds, where an event loop's timers (epoll's millisecond resolution,
rounded up) would add up to a millisecond per hop.

Run as its own process: ``python -m benchmarks.delivery.relay --upstream 127.0.0.1:PORT
--delay 0.010`` prints the port it listens on, then relays until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import signal
import socket
import sys
import threading
import time


def _pipe(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Copy ``src`` to ``dst``, each chunk ``delay`` seconds after it was read."""
    fifo: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def deliver() -> None:
        try:
            while True:
                due, data = fifo.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            pass

    writer = threading.Thread(target=deliver, daemon=True)
    writer.start()
    while True:
        try:
            data = src.recv(1 << 16)
        except OSError:
            data = b""
        fifo.put((time.monotonic() + delay, data))
        if not data:
            break
    writer.join()


def _connection(client: socket.socket, upstream: tuple[str, int], delay: float) -> None:
    try:
        server = socket.create_connection(upstream)
    except OSError:
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = threading.Thread(target=_pipe, args=(client, server, delay), daemon=True)
    up.start()
    _pipe(server, client, delay)
    up.join()
    for s in (client, server):
        with contextlib.suppress(OSError):
            s.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port of the real server")
    parser.add_argument("--delay", type=float, default=0.010, help="seconds, each direction")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(
            target=_connection, args=(client, (host, int(port)), args.delay), daemon=True
        ).start()


if __name__ == "__main__":
    main(sys.argv[1:])
