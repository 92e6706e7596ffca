"""Run one client in this (fresh) process and print what it measured as one JSON line.

``python -m benchmarks.delivery.worker '<spec JSON>'``. The spec names the client and the
workload (host, port, messages, recipients, connections, ...). The timed phase covers sending
only: connections are opened before it and closed after it (the pool gets one warm-up message
per connection before it). CPU is ``getrusage`` user+system of this process and of the children
it reaped (the pool's worker processes) over the phase, so it counts every thread and process
of the client and nothing of the server, the relay or another peer.
Peak RSS is the process's VmHWM (see :func:`peak_rss_kb`).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


class Phase:
    """Wall time and process CPU between ``__enter__`` and ``__exit__``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0
        self.notes: dict[str, Any] = {}

    def __enter__(self) -> Phase:
        self._cpu0 = self._cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu = self._cpu() - self._cpu0

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_kb(pid: str) -> int:
    """VmHWM: the peak resident set of the process's address space since its exec.

    Not ``ru_maxrss`` from ``wait4``: Linux carries the forking parent's high-water mark into an
    exec'd child's ``ru_maxrss``, so every child of the (40 MB) harness would report >= 40 MB.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def clients() -> dict[str, Any]:
    from benchmarks.delivery.mailsdk_clients import CLIENTS as OURS
    from benchmarks.delivery.peers import CLIENTS as PEERS

    return {**PEERS, **OURS}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    run = clients()[spec["client"]]
    phase = Phase()
    delivered = run(spec, phase)
    report = {"delivered": delivered, "seconds": phase.seconds, "cpu": phase.cpu}
    report["vmhwm_kb"] = peak_rss_kb("self")
    report["otel_sdk_loaded"] = any(m.startswith("opentelemetry.sdk") for m in sys.modules)
    report.update(phase.notes)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
