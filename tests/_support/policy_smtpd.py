"""A one-connection loopback SMTP server that answers each command by a policy (not collected).

Unlike :mod:`tests._support.scripted_server` (a fixed script), it parses what the client sends as
a server would (command lines, DATA bodies up to ``CRLF.CRLF``, ``BDAT n`` payloads) and asks a
:class:`Policy` for each command's reply, so one policy can be played against clients that write
differently. It records every byte received and every command seen. Faults a policy can ask for
per command: no reply at all (``MISSING``), an extra reply after it (``extra``), or closing the
connection before or after replying (``DROP_BEFORE`` / ``DROP_AFTER``).

Every socket operation has a timeout and the thread is joined at :meth:`PolicyServer.stop`, so a
wrong client can fail a test but never hang it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import typing

import attrs

__all__ = ["DROP_AFTER", "DROP_BEFORE", "MISSING", "Command", "Policy", "PolicyServer", "Reply"]

MISSING: typing.Final = "missing"
DROP_BEFORE: typing.Final = "drop-before"
DROP_AFTER: typing.Final = "drop-after"


@attrs.frozen
class Command:
    """One command the server read: its verb, its line and its position among all commands."""

    verb: str
    line: bytes
    number: int


@attrs.frozen
class Reply:
    """What to answer: ``data`` (CRLF included), an ``extra`` reply after it, or a fault."""

    data: bytes = b"250 ok\r\n"
    extra: bytes = b""
    fault: str | None = None


class Policy(typing.Protocol):
    def __call__(self, command: Command) -> Reply: ...


class PolicyServer:
    """Serve one connection on 127.0.0.1 with ``policy`` (EHLO is answered with ``ehlo``)."""

    def __init__(self, policy: Policy, *, ehlo: tuple[str, ...], io_timeout: float = 10.0) -> None:
        self._policy = policy
        self._ehlo = ehlo
        self._timeout = io_timeout
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(io_timeout)
        self.port: int = self._listener.getsockname()[1]
        self.received = bytearray()
        self.commands: list[Command] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._thread.join(self._timeout * 2)
        self._listener.close()
        if self._thread.is_alive():
            raise AssertionError("the policy server did not finish")
        if self.errors:
            raise self.errors[0]

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:  # pragma: no cover - the client never connected
            self.errors.append(exc)
            return
        with conn:
            conn.settimeout(self._timeout)
            # One small write per reply: without this, Nagle holds each behind the client's
            # delayed ACK (40 ms per reply after the first of a pipelined group).
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The client going away ends the conversation: what was received is the record.
            with contextlib.suppress(OSError):
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.sendall(b"220 policy ready\r\n")
        buf = bytearray()
        number = 0

        def fill() -> bool:
            data = conn.recv(65536)
            if not data:
                return False
            self.received.extend(data)
            buf.extend(data)
            return True

        def line() -> bytes | None:
            while b"\r\n" not in buf:
                if not fill():
                    return None
            end = buf.index(b"\r\n") + 2
            taken = bytes(buf[:end])
            del buf[:end]
            return taken

        def exact(count: int) -> bool:
            while len(buf) < count:
                if not fill():
                    return False
            del buf[:count]
            return True

        while True:
            text = line()
            if text is None:
                return
            verb = text.split(b" ", 1)[0].split(b":", 1)[0].rstrip(b"\r\n").upper().decode()
            if verb in ("EHLO", "HELO"):
                lines = ["policy", *self._ehlo]
                body = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
                conn.sendall(body.encode())
                continue
            if verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            if verb == "MAIL" and text.upper().startswith(b"MAIL FROM:"):
                verb = "MAIL"
            elif verb == "RCPT":
                verb = "RCPT"
            if verb == "BDAT":
                words = text.split()
                if not exact(int(words[1])):
                    return
                if len(words) > 2 and words[2].upper() == b"LAST":
                    verb = "BDAT LAST"
            command = Command(verb, text, number)
            number += 1
            self.commands.append(command)
            reply = self._policy(command)
            if reply.fault == DROP_BEFORE:
                return
            if reply.fault != MISSING:
                conn.sendall(reply.data + reply.extra)
            if reply.fault == DROP_AFTER:
                return
            if verb == "DATA" and reply.data.startswith(b"354") and reply.fault != MISSING:
                # The body, up to the terminator, answered as "DATA.END".
                while True:
                    body_line = line()
                    if body_line is None:
                        return
                    if body_line == b".\r\n":
                        break
                end = Command("DATA.END", b".\r\n", number)
                number += 1
                self.commands.append(end)
                reply = self._policy(end)
                if reply.fault == DROP_BEFORE:
                    return
                if reply.fault != MISSING:
                    conn.sendall(reply.data + reply.extra)
                if reply.fault == DROP_AFTER:
                    return
