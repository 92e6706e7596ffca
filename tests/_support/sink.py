"""A tiny threaded SMTP sink on loopback that keeps nothing: for memory and volume tests.

Not collected. It answers the greeting, EHLO (advertising ``extensions``), MAIL, RCPT, DATA
(354), the end of the data (250), BDAT, RSET, NOOP and QUIT, reading in fixed-size pieces and
keeping only a short tail of the data, so its own memory stays flat however big the message.
It counts messages and content bytes (after un-stuffing is not needed: raw wire bytes).
"""

from __future__ import annotations

import socket
import threading

__all__ = ["Sink"]


class Sink:
    """One-connection-at-a-time SMTP sink. Use as a context manager."""

    def __init__(self, extensions: tuple[str, ...] = ("PIPELINING", "SIZE 0", "8BITMIME")) -> None:
        self.extensions = extensions
        self.messages = 0
        self.data_bytes = 0
        self.size_params: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop = False

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.sendall(b"220 sink ESMTP\r\n")
        buf = b""
        in_data = False
        bdat_left = 0
        while True:
            if in_data:
                end = buf.find(b"\r\n.\r\n")
                if end < 0 and buf.startswith(b".\r\n"):
                    end = -2
                if end == -1:
                    keep = buf[-4:]
                    self.data_bytes += len(buf) - len(keep)
                    buf = keep
                else:
                    self.data_bytes += end + 2
                    buf = buf[end + 5 :]
                    in_data = False
                    self.messages += 1
                    conn.sendall(b"250 2.0.0 Ok: queued as S%d\r\n" % self.messages)
                    continue
            elif bdat_left:
                take = min(bdat_left, len(buf))
                bdat_left -= take
                self.data_bytes += take
                buf = buf[take:]
                if not bdat_left:
                    self._bdat_done(conn)
                    continue
            else:
                line, sep, rest = buf.partition(b"\r\n")
                if sep:
                    buf = rest
                    if self._command(conn, line):
                        return
                    if line.upper() == b"DATA":
                        in_data = True
                    elif line.upper().startswith(b"BDAT"):
                        bdat_left = int(line.split()[1])
                        self._bdat_last = line.upper().endswith(b"LAST")
                        if not bdat_left:
                            self._bdat_done(conn)
                    continue
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk

    _bdat_last = False

    def _bdat_done(self, conn: socket.socket) -> None:
        if self._bdat_last:
            self.messages += 1
            conn.sendall(b"250 2.0.0 Ok: queued as S%d\r\n" % self.messages)
        else:
            conn.sendall(b"250 2.0.0 chunk ok\r\n")

    def _command(self, conn: socket.socket, line: bytes) -> bool:
        verb = line.split(b" ", 1)[0].upper()
        if verb in (b"EHLO", b"LHLO"):
            ext = "".join(f"250-{e}\r\n" for e in self.extensions)
            conn.sendall(f"250-sink\r\n{ext}250 OK\r\n".encode())
        elif verb == b"MAIL":
            self.size_params.append(
                next((p.decode() for p in line.split() if p.upper().startswith(b"SIZE=")), "")
            )
            conn.sendall(b"250 2.1.0 ok\r\n")
        elif verb in (b"RCPT", b"RSET", b"NOOP"):
            conn.sendall(b"250 ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 go\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return True
        elif verb != b"BDAT":
            conn.sendall(b"500 what\r\n")
        return False
