"""What every client sends: the same 2.3 KB message, envelope and split over connections."""

from __future__ import annotations

import os
from pathlib import Path

SENDER = "bench@example.org"
HELO = "bench.invalid"
MESSAGE_SIZE = 2300

_HEADERS = (
    b"From: Bench <bench@example.org>\r\n"
    b"To: Sink <rcpt@example.com>\r\n"
    b"Subject: delivery benchmark\r\n"
    b"Message-ID: <bench@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
)
_LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"


def message() -> bytes:
    """A plain-text message of about :data:`MESSAGE_SIZE` bytes (CRLF lines, no leading dots)."""
    return _HEADERS + _LINE * ((MESSAGE_SIZE - len(_HEADERS)) // len(_LINE))


def recipients(count: int) -> list[str]:
    return [f"r{i}@example.com" for i in range(count)]


def split(total: int, parts: int) -> list[int]:
    """``total`` messages over ``parts`` connections, as evenly as possible."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def write_big_message(path: Path, size: int) -> None:
    """Write an RFC 5322 message of about ``size`` bytes (78-byte CRLF lines) to ``path``."""
    line = _LINE
    with path.open("wb") as f:
        f.write(_HEADERS)
        block = line * 13_000  # ~1 MB per write
        left = size - len(_HEADERS)
        while left > 0:
            chunk = block[: max(len(line), left - left % len(line))]
            f.write(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())


def smtp_source_file(path: Path) -> None:
    """The message as ``smtp-source -F`` wants it: LF line ends (it appends CRLF itself)."""
    path.write_bytes(message().replace(b"\r\n", b"\n"))
