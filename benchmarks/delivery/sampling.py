"""One measurement: a client in its own process against the sink, checked against the sink's count."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.delivery.servers import SOURCE_CANDIDATES, SmtpSink, find_binary
from benchmarks.delivery.workload import HELO, SENDER

ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT = 900.0


@dataclass
class Sample:
    """What one run of one client measured."""

    client: str
    messages: int
    seconds: float
    cpu: float
    maxrss_kb: int
    delivered: int  # what the client says the server confirmed
    received: int  # what the server counted
    extra: dict[str, Any] = field(default_factory=dict)  # what else the worker reported

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.messages * 1e6 if self.messages else 0.0


@dataclass
class Series:
    """Repeated samples of one client in one case, summarised as median and min-max."""

    client: str
    connections: int
    samples: list[Sample] = field(default_factory=list)

    def stat(self, attr: str) -> dict[str, float]:
        values = [getattr(s, attr) for s in self.samples]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    @property
    def complete(self) -> bool:
        """Every run delivered every message (client and server agree)."""
        return all(s.delivered == s.messages == s.received for s in self.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "connections": self.connections,
            "msg_per_s": self.stat("rate"),
            "cpu_us_per_msg": self.stat("cpu_us"),
            "peak_rss_mb": {k: v / 1024 for k, v in self.stat("maxrss_kb").items()},
            "complete": self.complete,
            "samples": [asdict(s) for s in self.samples],
        }


class _HwmWatch:
    """Polls a running child's VmHWM (a C program cannot report its own; see worker)."""

    def __init__(self, pid: int) -> None:
        self.kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(pid,), daemon=True)
        self._thread.start()

    def _poll(self, pid: int) -> None:
        from benchmarks.delivery.worker import peak_rss_kb

        while True:
            self.kb = max(self.kb, peak_rss_kb(str(pid)))
            if self._done.wait(0.01):
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, Any]:
    """Read the child's stdout, then reap it with ``wait4`` to get its own CPU time."""
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
        if proc.stdout:
            proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
    return out, usage


def _settle(sink: SmtpSink, before: int, expected: int) -> int:
    """The server's count for this run (its counter may trail the client's exit a little)."""
    deadline = time.monotonic() + 2
    while (got := sink.received() - before) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def run_worker(sink: SmtpSink, spec: dict[str, Any]) -> Sample:
    """Run a Python client (:mod:`.worker`) once; CPU and time cover its sending phase."""
    before = sink.received()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.delivery.worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    out, _ = _reap(proc, WORKER_TIMEOUT)
    result = json.loads(out.splitlines()[-1])
    warmup = int(result.get("warmup", 0))  # sent before the timed phase (the pool's)
    return Sample(
        client=spec["client"],
        messages=spec["messages"],
        seconds=result["seconds"],
        cpu=result["cpu"],
        maxrss_kb=result["vmhwm_kb"],
        delivered=result["delivered"],
        received=_settle(sink, before, spec["messages"] + warmup) - warmup,
        extra={k: v for k, v in result.items() if k not in ("delivered", "seconds", "cpu")},
    )


def run_smtp_source(sink: SmtpSink, spec: dict[str, Any], message_file: Path) -> Sample:
    """Postfix's C load generator; timed from outside (its start-up is a few ms of C)."""
    binary = find_binary("smtp-source", SOURCE_CANDIDATES)
    if binary is None:
        raise FileNotFoundError("smtp-source not found: run scripts/install-bench.sh")
    argv = [binary, "-d", "-s", str(spec["connections"]), "-m", str(spec["messages"])]
    argv += ["-r", str(spec["recipients"]), "-F", str(message_file), "-M", HELO]
    argv += ["-f", SENDER, "-t", "r@example.com", f"{spec['host']}:{spec['port']}"]
    before = sink.received()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    peak = _HwmWatch(proc.pid)
    _, usage = _reap(proc, WORKER_TIMEOUT)
    seconds = time.perf_counter() - t0
    peak.stop()
    received = _settle(sink, before, spec["messages"])
    return Sample(
        client="smtp-source",
        messages=spec["messages"],
        seconds=seconds,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kb=peak.kb,
        delivered=spec["messages"],  # it exits non-zero on any unexpected reply
        received=received,
    )
