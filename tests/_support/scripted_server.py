"""A threaded one-connection loopback server that plays a script (urllib3 ``socket_handler`` style).

Not collected. A script is a list of steps run in order against the one accepted connection:

* :class:`Send` bytes; :class:`Trickle` bytes one at a time with a pause between them;
* :class:`Expect` a line starting with a prefix (recorded; a mismatch is an error reported at
  :meth:`ScriptedServer.stop`); :class:`ExpectBlock` several lines that must arrive together
  (pipelining: records how many reads it took); :class:`ReadData` a DATA body up to ``.CRLF``;
  :class:`ReadBytes` an exact count (BDAT);
* :class:`StartTls` wraps the socket with a server context (optionally sending ``before``
  bytes in plaintext right after the 220 first: the STARTTLS injection attack);
* :class:`Loop` answers every line the same way until a given line (an endless 334 loop);
* :class:`Close`, :class:`Reset` (RST via SO_LINGER 0), :class:`WaitClose` (until the client
  closes), :class:`Sleep` (only for *server* pacing: never used to synchronise the test).

Every socket operation has a timeout (``io_timeout``), the accept has one too, and the thread
is joined at :meth:`ScriptedServer.stop`, so a wrong client can fail a test but never hang it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
import typing

import attrs

__all__ = [
    "Close",
    "Expect",
    "ExpectBlock",
    "Loop",
    "ReadBytes",
    "ReadData",
    "Reset",
    "ScriptedServer",
    "Send",
    "Sleep",
    "StartTls",
    "Step",
    "Trickle",
    "WaitClose",
    "ehlo_reply",
]


@attrs.frozen
class Send:
    data: bytes


@attrs.frozen
class Trickle:
    data: bytes
    interval: float = 0.2


@attrs.frozen
class Expect:
    prefix: bytes


@attrs.frozen
class ExpectBlock:
    prefixes: tuple[bytes, ...]


@attrs.frozen
class ReadData:
    """Read a DATA body up to and including the ``CRLF.CRLF`` terminator."""


@attrs.frozen
class ReadBytes:
    count: int


@attrs.frozen
class StartTls:
    context: ssl.SSLContext
    before: bytes = b""


@attrs.frozen
class Close:
    pass


@attrs.frozen
class Reset:
    pass


@attrs.frozen
class WaitClose:
    pass


@attrs.frozen
class Sleep:
    seconds: float


@attrs.frozen
class Loop:
    """Answer every line with ``reply`` until a line starting with ``until`` arrives (answered
    with ``final``), at most ``limit`` times (a hostile server that never lets go)."""

    reply: bytes
    until: bytes
    final: bytes
    limit: int = 100


Step: typing.TypeAlias = (
    Send
    | Trickle
    | Expect
    | ExpectBlock
    | ReadData
    | ReadBytes
    | StartTls
    | Close
    | Reset
    | WaitClose
    | Sleep
    | Loop
)


def ehlo_reply(*keywords: str, name: str = "mx.test") -> bytes:
    """A 250 EHLO reply advertising ``keywords``."""
    lines = [name, *keywords]
    out = b""
    for i, line in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        out += f"250{sep}{line}\r\n".encode()
    return out


class ScriptError(AssertionError):
    """The client did not do what the script expected."""


class ScriptedServer:
    """Listen on loopback, accept one connection, play ``steps``, record what the client sent.

    Attributes:
        received: every byte read from the client (after TLS, the decrypted bytes).
        lines: the lines matched by Expect/ExpectBlock, in order.
        data: bodies read by ReadData/ReadBytes.
        block_reads: for each ExpectBlock, how many reads it took.
        done: set when the script has finished (or failed).
    """

    def __init__(
        self,
        steps: typing.Sequence[Step],
        *,
        family: socket.AddressFamily = socket.AF_INET,
        io_timeout: float = 5.0,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.steps = list(steps)
        self.io_timeout = io_timeout
        self.implicit_tls = implicit_tls
        self.received = bytearray()
        self.lines: list[bytes] = []
        self.data: list[bytes] = []
        self.block_reads: list[int] = []
        self.errors: list[BaseException] = []
        #: The client's address, once it connected.
        self.peer: tuple[typing.Any, ...] | None = None
        self.done = threading.Event()
        self._buffer = b""
        self._conn: socket.socket | None = None
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(io_timeout)
        self.host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # -- server thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            conn, self.peer = self.listener.accept()
        except OSError as exc:
            self.errors.append(exc)
            self.done.set()
            return
        conn.settimeout(self.io_timeout)
        try:
            if self.implicit_tls is not None:
                conn = self.implicit_tls.wrap_socket(conn, server_side=True)
            self._conn = conn
            for step in self.steps:
                self._play(step)
        except (ScriptError, OSError, ssl.SSLError, ValueError) as exc:
            self.errors.append(exc)
        finally:
            self._close()
            self.done.set()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def _recv(self) -> bytes:
        assert self._conn is not None
        chunk = self._conn.recv(65536)
        self.received += chunk
        return chunk

    def _line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self._recv()
            if not chunk:
                raise ScriptError(f"client closed; unterminated {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def _play(self, step: Step) -> None:
        conn = self._conn
        assert conn is not None
        match step:
            case Send(data):
                conn.sendall(data)
            case Trickle(data, interval):
                for i in range(len(data)):
                    conn.sendall(data[i : i + 1])
                    time.sleep(interval)
            case Expect(prefix):
                line = self._line()
                self.lines.append(line)
                if not line.upper().startswith(prefix.upper()):
                    raise ScriptError(f"expected {prefix!r}, got {line!r}")
            case ExpectBlock(prefixes):
                reads = 0
                needed = len(prefixes)
                while self._buffer.count(b"\n") < needed:
                    chunk = self._recv()
                    reads += 1
                    if not chunk:
                        raise ScriptError(f"client closed during a block; got {self._buffer!r}")
                    self._buffer += chunk
                self.block_reads.append(reads)
                for prefix in prefixes:
                    line = self._line()
                    self.lines.append(line)
                    if not line.upper().startswith(prefix.upper()):
                        raise ScriptError(f"expected {prefix!r} in the block, got {line!r}")
            case ReadData():
                while b"\r\n.\r\n" not in b"\r\n" + self._buffer:
                    chunk = self._recv()
                    if not chunk:
                        raise ScriptError("client closed during DATA")
                    self._buffer += chunk
                body, _, self._buffer = (b"\r\n" + self._buffer).partition(b"\r\n.\r\n")
                self.data.append(body[2:] + b"\r\n" if body[2:] else b"")
            case ReadBytes(count):
                while len(self._buffer) < count:
                    chunk = self._recv()
                    if not chunk:
                        raise ScriptError("client closed during BDAT")
                    self._buffer += chunk
                self.data.append(self._buffer[:count])
                self._buffer = self._buffer[count:]
            case StartTls(context, before):
                if before:
                    conn.sendall(before)
                self._conn = context.wrap_socket(conn, server_side=True)
            case Close():
                self._close()
            case Reset():
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._close()
            case WaitClose():
                while self._recv():
                    pass
            case Sleep(seconds):
                time.sleep(seconds)
            case Loop(reply, until, final, limit):
                for _ in range(limit):
                    line = self._line()
                    self.lines.append(line)
                    if line.startswith(until):
                        conn.sendall(final)
                        return
                    conn.sendall(reply)
                raise ScriptError(f"the client never sent {until!r}")

    # -- test side --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Wait for the script to end (bounded), close everything, re-raise script errors.

        A client that gave up early makes the server see EOF/reset: that is expected for
        hostile scenarios and is not an error unless the test asks (:meth:`check`).
        """
        self.done.wait(self.io_timeout + 1)
        self.listener.close()
        self._thread.join(self.io_timeout + 1)
        self._close()

    def check(self) -> None:
        """Wait for the script to finish and raise the first script error, if any."""
        if not self.done.wait(self.io_timeout + 1):
            raise ScriptError("the script did not finish")
        if self.errors:
            raise self.errors[0]
