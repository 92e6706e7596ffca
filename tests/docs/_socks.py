"""A tiny threaded SOCKS5 proxy (RFC 1928, user/password RFC 1929) for docs/proxies.md.

Not collected. It resolves names through the docs servers' host map (never DNS), relays bytes
both ways, and records the targets it was asked for. Every socket has a timeout and the
threads are daemons, so a wrong client cannot hang the suite.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["SocksProxy"]


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class SocksProxy:
    """``SocksProxy(hosts, users)``: ``hosts`` maps ``"name:port"`` to a loopback port."""

    def __init__(self, hosts: dict[str, int], users: dict[str, str]) -> None:
        self.hosts = hosts
        self.users = users
        self.targets: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(10)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ConnectionError), conn:
            _version, count = _recv_exact(conn, 2)
            methods = _recv_exact(conn, count)
            if 2 in methods:
                conn.sendall(b"\x05\x02")
                _sub, ulen = _recv_exact(conn, 2)
                user = _recv_exact(conn, ulen).decode()
                (plen,) = _recv_exact(conn, 1)
                password = _recv_exact(conn, plen).decode()
                ok = self.users.get(user) == password
                conn.sendall(b"\x01\x00" if ok else b"\x01\x01")
                if not ok:
                    return
            elif 0 in methods:
                conn.sendall(b"\x05\x00")
            else:
                conn.sendall(b"\x05\xff")
                return
            _ver, _cmd, _rsv, atyp = _recv_exact(conn, 4)
            if atyp == 3:
                (length,) = _recv_exact(conn, 1)
                host = _recv_exact(conn, length).decode()
            elif atyp == 1:
                host = socket.inet_ntoa(_recv_exact(conn, 4))
            else:
                host = socket.inet_ntop(socket.AF_INET6, _recv_exact(conn, 16))
            (port,) = struct.unpack("!H", _recv_exact(conn, 2))
            target = f"{host}:{port}"
            self.targets.append(target)
            if target not in self.hosts:
                conn.sendall(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
                return
            upstream = socket.create_connection(("127.0.0.1", self.hosts[target]), timeout=10)
            conn.sendall(b"\x05\x00\x00\x01" + bytes(6))
            with upstream:
                threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
                self._pipe(conn, upstream)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
