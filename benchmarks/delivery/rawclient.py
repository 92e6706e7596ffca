"""The floor reference: a minimal asyncio SMTP client that pipelines across transactions.

RFC 2920 lets a client send message N's body and end of data, then message N+1's MAIL, RCPTs
and DATA, in one write; the DATA reply (354) must arrive before the next body goes out. So the
steady state is one round trip per message whatever the number of recipients:

    write: <body N> "." MAIL RCPT... DATA      read: 250 (N)  250  250...  354

This client does only that (no TLS, no AUTH, no error recovery: any unexpected reply raises),
so its speed is what the protocol allows on the link. It needs PIPELINING from the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


class RawError(Exception):
    """The server answered something the reference client does not handle."""


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    lines = []
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise RawError(f"connection closed or short reply: {line!r}")
        lines.append(line[4:].rstrip(b"\r\n"))
        if line[3:4] != b"-":
            return int(line[:3]), lines


async def _expect(reader: asyncio.StreamReader, code: int) -> None:
    got, lines = await _reply(reader)
    if got != code:
        raise RawError(f"expected {code}, got {got} {lines!r}")


def _stuff(message: bytes) -> bytes:
    """Dot-stuff a CRLF message and append the end-of-data line."""
    body = message if message.endswith(b"\r\n") else message + b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class RawSession:
    """One connection: :meth:`open` (greeting, EHLO), :meth:`send`, :meth:`close` (QUIT)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        await _expect(self.reader, 220)
        self.writer.write(b"EHLO raw.invalid\r\n")
        code, lines = await _reply(self.reader)
        if code != 250 or not any(ln.upper().startswith(b"PIPELINING") for ln in lines):
            raise RawError("the server does not offer PIPELINING")

    async def send(self, sender: str, recipients: Sequence[str], message: bytes, count: int) -> int:
        """Send ``count`` copies of ``message``; return how many got a 250."""
        reader, writer = self.reader, self.writer
        envelope = (
            f"MAIL FROM:<{sender}>\r\n".encode()
            + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in recipients)
            + b"DATA\r\n"
        )
        body = _stuff(message)
        accepted = 0
        if count:
            writer.write(envelope)
        for i in range(count):
            await _expect(reader, 250)  # MAIL
            for _ in recipients:
                await _expect(reader, 250)
            await _expect(reader, 354)
            # This message's body and end of data, and the next envelope, in one write.
            writer.write(body + envelope if i + 1 < count else body)
            code, _ = await _reply(reader)
            accepted += code == 250
        return accepted

    async def close(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await _expect(self.reader, 221)
        finally:
            self.writer.close()
            await self.writer.wait_closed()
