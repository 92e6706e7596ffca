"""A private ``redis-server`` for the integration suites: own port, own directory, foreground.

Layer: test support only. Imports the standard library only. The server runs with
``--daemonize no`` in its own process group, listens on 127.0.0.1 only, persists with an
append-only file in its private directory (so :meth:`RedisServer.restart` keeps the data, as a
production deployment of the ledger must) and is stopped by PID. Debian's package is installed by
``scripts/install-redis.sh``; without it :data:`SKIP_REASON` says why the tests skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["SKIP_REASON", "RedisServer", "find_redis", "free_port", "start_redis"]

STARTUP_TIMEOUT = 15.0
SKIP_REASON = "redis-server not installed (run scripts/install-redis.sh as root)"


def find_redis() -> str | None:
    """Return the path of ``redis-server``, or ``None``."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One private redis-server process; :attr:`url` is what clients connect to."""

    def __init__(self, binary: str, root: Path, port: int, password: str | None = None) -> None:
        self.binary = binary
        self.root = root
        self.port = port
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:<port>/0``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--dir",
            str(self.root),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--enable-debug-command",
            "local",  # DEBUG SLEEP: the slow-Redis tests
            "--logfile",
            str(self.root / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within {STARTUP_TIMEOUT}s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if self.password is None:
            return _ping(self.port)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                time.sleep(0.02)
                return b"+PONG" in sock.recv(128)
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (the server flushes its AOF), wait, then SIGKILL the process group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down for ``down_for`` seconds, start again on the same port and data."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def log(self) -> str:
        """The server log (for failure messages)."""
        path = self.root / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def start_redis(password: str | None = None) -> Iterator[RedisServer]:
    """Run a private redis-server for the duration of the ``with`` block."""
    binary = find_redis()
    if binary is None:
        raise RuntimeError(SKIP_REASON)
    root = Path(tempfile.mkdtemp(prefix="mailsdk-redis-"))
    server = RedisServer(binary, root, free_port(), password)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
