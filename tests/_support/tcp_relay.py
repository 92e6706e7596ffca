"""A counting TCP relay: clients connect to it, it forwards to a real server and counts.

Layer: test support only (standard library). Used to observe, on the *server* side of every
client, how many SMTP connections are open at once (the connection-cap tests): the relay's
count is what the server sees, whatever the clients believe.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress

__all__ = ["CountingRelay"]


class CountingRelay:
    """Listen on 127.0.0.1 (free port) and relay each connection to ``(host, port)``.

    Attributes:
        port: the relay's port (point the clients here).
        current: connections open now.
        peak: the most connections ever open at once.
        total: connections accepted in all.
        accepted_at: ``time.monotonic()`` of every ``queued as`` reply the server sent (one per
            message it accepted), for rate measurements on the server side.
    """

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.total = 0
        self.accepted_at: list[float] = []
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.current += 1
                self.total += 1
                self.peak = max(self.peak, self.current)
            done = threading.Event()
            for src, dst, watch in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(src, dst, done, watch), daemon=True
                ).start()
            threading.Thread(
                target=self._finish, args=(client, upstream, done), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, done: threading.Event, watch: bool
    ) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                if watch:
                    seen = tail + data
                    hits = seen.count(b" queued as ")
                    if hits:
                        now = time.monotonic()
                        with self._lock:
                            self.accepted_at.extend([now] * hits)
                    tail = seen[-10:] if b" queued as " not in seen[-10:] else b""
                dst.sendall(data)
        except OSError:
            pass
        finally:
            done.set()

    def _finish(
        self, client: socket.socket, upstream: socket.socket, done: threading.Event
    ) -> None:
        done.wait()
        # One side closed: the connection is over for both (close both, count it once).
        for sock in (client, upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            self.current -= 1

    def close(self) -> None:
        """Stop accepting (open relayed connections end when either side closes)."""
        with suppress(OSError):  # wakes the blocked accept() (close alone does not, on Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
