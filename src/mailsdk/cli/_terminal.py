"""Terminal-safe output: server text is data, never terminal control.

Layer: L8 command line (private). Everything the command line prints that came from a server
(greeting, reply text, certificate names) or from a file goes through :func:`safe`, which
escapes control characters (C0, C1, DEL, and Unicode format characters such as bidi overrides),
so a hostile server cannot move the cursor, recolour the screen, set the window title or hide
text with ANSI escape sequences. JSON output is escaped by the JSON encoder instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import typing
import unicodedata

__all__ = [
    "PipeSafeStdout",
    "WireHandler",
    "disable_wire",
    "emit_json",
    "enable_wire",
    "guard_stdout",
    "safe",
    "safe_lines",
]

#: Unicode categories that must never reach a terminal raw: controls (Cc) and format
#: characters (Cf: bidi overrides, zero-width joiners...), line/paragraph separators.
_UNSAFE_CATEGORIES: typing.Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` as a string with every control or format character escaped (``\\x1b``).

    Args:
        text: anything; ``bytes`` are decoded as UTF-8 with replacement.
        keep_newlines: keep ``\\n`` (for multi-line text the caller lays out itself).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    s = str(text)
    if s.isprintable() and "\x1b" not in s:
        return s
    out: list[str] = []
    for ch in s:
        keep = (ch == "\n" and keep_newlines) or ch == " "
        if keep or (ch.isprintable() and unicodedata.category(ch) not in _UNSAFE_CATEGORIES):
            out.append(ch)
        else:
            out.append(_escape(ch))
    return "".join(out)


def safe_lines(text: object) -> list[str]:
    """``text`` split into lines, each made safe."""
    return [safe(line) for line in str(text).split("\n")]


def emit_json(data: object, out: typing.TextIO | None = None) -> None:
    """Write one JSON document (ASCII only, so no raw control character can be printed)."""
    stream = out or sys.stdout
    stream.write(json.dumps(data, ensure_ascii=True, sort_keys=False) + "\n")
    stream.flush()


class WireHandler(logging.Handler):
    """Prints the ``mailsdk.wire`` protocol log (already redacted by the client) to stderr.

    Consecutive ``C:`` lines without a reply in between were written together: that is
    PIPELINING (RFC 2920) at work, and the handler marks them with ``|`` so it shows. Each
    thread (one per connection in a batch) is tracked on its own, and a batch worker's lines
    carry the number of its connection (``[1]``).
    """

    def __init__(self, stream: typing.TextIO | None = None) -> None:
        super().__init__(logging.DEBUG)
        self._stream = stream
        # per thread: was the last line a command, and the command line held back
        self._state: dict[int | None, tuple[bool, str | None]] = {}
        self._write_lock = threading.Lock()
        self._numbers: dict[int | None, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = safe(record.getMessage())
        except Exception:  # a logging handler must never raise into the client
            self.handleError(record)
            return
        name = record.threadName or ""
        with self._write_lock:
            prefix = ""
            if name.startswith("mailsdk-batch"):  # a batch connection: number them 1, 2, ...
                number = self._numbers.setdefault(record.thread, len(self._numbers) + 1)
                prefix = f"[{number}] "
            last_client, pending = self._state.get(record.thread, (False, None))
            out: list[str] = []
            is_client = line.startswith("C:")
            if is_client and last_client:
                # a second command before any reply: the previous one went out with this one
                if pending is not None:
                    out.append(f"  | {prefix}{pending}")
                out.append(f"  | {prefix}{line}")
                pending = None
            else:
                if pending is not None:
                    out.append(f"    {prefix}{pending}")
                pending = line if is_client else None
                if not is_client:
                    out.append(f"    {prefix}{line}")
            self._state[record.thread] = (is_client, pending)
            if out:
                stream = self._stream or sys.stderr
                stream.write("\n".join(out) + "\n")
                stream.flush()

    def flush(self) -> None:
        """Write the command lines still held back (the last command of each thread)."""
        with self._write_lock:
            stream = self._stream or sys.stderr
            for thread, (last_client, pending) in list(self._state.items()):
                if pending is not None:
                    stream.write(f"    {pending}\n")
                    self._state[thread] = (last_client, None)


def enable_wire(stream: typing.TextIO | None = None) -> WireHandler:
    """Attach a :class:`WireHandler` to the ``mailsdk.wire`` logger and return it."""
    logger = logging.getLogger("mailsdk.wire")
    handler = WireHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


def disable_wire(handler: WireHandler) -> None:
    """Detach ``handler`` (and flush what it holds)."""
    handler.flush()
    logger = logging.getLogger("mailsdk.wire")
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


class PipeSafeStdout:
    """Standard output that a closed pipe (``mailsdk send ... | head -0``) cannot break.

    Without it, printing the result of a message that *was* delivered raised
    ``BrokenPipeError`` and the command exited 3 ("transient failure or unknown outcome"), so
    a script would have sent the message again. The first broken write points file
    descriptor 1 at ``/dev/null`` and everything after is discarded: the command finishes and
    exits with the code of what it did.
    """

    def __init__(self, stream: typing.TextIO) -> None:
        self._stream = stream
        self.broken = False

    def _broke(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no real descriptor: later writes are dropped anyway
            pass

    def write(self, text: str) -> int:
        """Write ``text`` (dropped once the reader is gone)."""
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._broke()
            return len(text)

    def flush(self) -> None:
        """Flush (a reader that went away is not an error)."""
        if self.broken:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._broke()

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._stream, name)


def guard_stdout() -> PipeSafeStdout:
    """Replace ``sys.stdout`` with a :class:`PipeSafeStdout` (idempotent) and return it."""
    current = sys.stdout
    if isinstance(current, PipeSafeStdout):
        return current
    guarded = PipeSafeStdout(current)
    sys.stdout = typing.cast("typing.TextIO", guarded)
    return guarded
