"""Postfix's ``smtp-sink`` and the delaying relay as child processes, started and stopped by PID.

``smtp-sink`` runs standalone (no Postfix daemon, no configuration) on 127.0.0.1 and a free port.
With ``-c`` it writes running counters (``sess=N quit=N mesg=N``, one update per received end of
data) to its stdout: written to a file, they tell how many messages the server received during a
run (:meth:`SmtpSink.received`); read from a pipe, each update is a server-side timestamp
(:meth:`SmtpSink.watch`, for the rate-limit check).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

SINK_CANDIDATES = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")
SOURCE_CANDIDATES = ("/usr/sbin/smtp-source", "/usr/lib/postfix/sbin/smtp-source")
_MESG = re.compile(rb"mesg=(\d+)")


def find_binary(name: str, candidates: Sequence[str]) -> str | None:
    """The path of a Postfix test program, or None when Postfix is not installed."""
    found = shutil.which(name)
    if found:
        return found
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within 10 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class SmtpSink:
    """A running ``smtp-sink``; ``flags`` are extra options (``-p`` withholds PIPELINING)."""

    def __init__(self, flags: Sequence[str] = (), *, watch: bool = False) -> None:
        binary = find_binary("smtp-sink", SINK_CANDIDATES)
        if binary is None:
            raise FileNotFoundError("smtp-sink not found: run scripts/install-bench.sh")
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-sink-")
        self._counter = Path(self._dir.name) / "counters"
        argv = [binary, "-c", *flags]
        if os.geteuid() == 0:  # smtp-sink refuses to keep root privileges
            argv += ["-u", "nobody"]
        argv += [f"127.0.0.1:{self.port}", "256"]
        self.stamps: list[float] = []
        if watch:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
            self._reader: threading.Thread | None = threading.Thread(
                target=self._read_pipe, daemon=True
            )
            self._reader.start()
        else:
            self._reader = None
            with self._counter.open("wb") as out:
                self.proc = subprocess.Popen(argv, stdout=out)
        _wait_listening(self.port, self.proc, "smtp-sink")

    def _read_pipe(self) -> None:
        assert self.proc.stdout is not None
        last = 0
        while True:
            chunk = self.proc.stdout.read1(1 << 16)
            if not chunk:  # smtp-sink exited
                return
            now = time.monotonic()
            for match in _MESG.finditer(chunk):
                count = int(match.group(1))
                self.stamps.extend([now] * (count - last))
                last = count

    def received(self) -> int:
        """Messages received so far (end of data seen), from the last counter update."""
        if self.proc.stdout is not None:
            return len(self.stamps)
        with self._counter.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 256))
            tail = f.read()
        counts = _MESG.findall(tail)
        return int(counts[-1]) if counts else 0

    def close(self) -> None:
        _stop(self.proc)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._dir.cleanup()

    def __enter__(self) -> SmtpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Relay:
    """The delaying relay (:mod:`.relay`) in front of ``upstream_port``, in its own process."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.delay = delay
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.delivery.relay",
                "--upstream",
                f"127.0.0.1:{upstream_port}",
                "--delay",
                str(delay),
            ],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError("the relay did not start")
        self.port = int(line)
        _wait_listening(self.port, self.proc, "relay")

    def close(self) -> None:
        _stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure_rtt(port: int, samples: int = 21) -> float:
    """Median NOOP round trip (seconds) to an SMTP server, after the greeting and EHLO."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")

        def reply() -> None:
            while (line := f.readline()) and line[3:4] == b"-":
                pass

        reply()
        s.sendall(b"EHLO rtt.invalid\r\n")
        reply()
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            s.sendall(b"NOOP\r\n")
            reply()
            times.append(time.perf_counter() - t0)
        s.sendall(b"QUIT\r\n")
        reply()
    times.sort()
    return times[len(times) // 2]
