"""Real Celery workers as subprocesses (``celery -A <app> worker --pool=prefork``), by PID.

Layer: test support only (standard library). Each worker runs in its own process group with
its own node name, log file and environment; :meth:`Worker.stop` sends SIGTERM (warm shutdown),
then SIGKILLs the group. :meth:`Worker.children` lists the prefork child PIDs so a test can
kill one mid-task (the real crash the ledger must survive).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

__all__ = ["Worker", "WorkerStartupError"]

STARTUP_TIMEOUT = 60.0


class WorkerStartupError(RuntimeError):
    """A worker did not report ready; the message carries its log."""


class Worker:
    """One ``celery worker`` process (and its prefork children)."""

    def __init__(
        self,
        app: str,
        name: str,
        log_dir: Path,
        env: dict[str, str],
        *,
        concurrency: int = 2,
        pool: str = "prefork",
    ) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}@%h",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=env.get("MAILSDK_TEST_ROOT"),
            )

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait for the worker's ``ready.`` line (its children are forked by then)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if " ready." in text:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise WorkerStartupError(f"worker {self.name} not ready:\n{text[-4000:]}")
            time.sleep(0.1)

    def children(self) -> list[int]:
        """PIDs of the prefork pool processes."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with suppress(OSError):
            return [int(p) for p in path.read_text().split()]
        return []

    def connected_children(self, port: int) -> list[int]:
        """Pool processes with an open TCP connection to 127.0.0.1:``port`` (Linux /proc)."""
        wanted = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if remote_port == port and fields[3] == "01":  # ESTABLISHED
                        wanted.add(fields[9])
        found = []
        for pid in self.children():
            with suppress(OSError):
                fds = Path(f"/proc/{pid}/fd")
                links = {os.readlink(fd) for fd in fds.iterdir()}
                if any(f"socket:[{inode}]" in links for inode in wanted):
                    found.append(pid)
        return found

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left of the process group."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def text(self) -> str:
        """The worker's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""
