"""Run one client in this (fresh) process and print what it measured as one JSON line.

``python -m benchmarks.delivery.worker '<spec JSON>'``. The spec names the client and the
workload (host, port, messages, recipients, connections, ...). The timed phase covers sending
only: connections are opened before it and closed after it (the pool opens its connections
inside it, as a pool does). CPU is ``getrusage(RUSAGE_SELF)`` user+system over the phase, so
it counts every thread of the client and nothing of the server, the relay or another peer; the
parent adds the process's peak RSS from ``wait4``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


class Phase:
    """Wall time and process CPU between ``__enter__`` and ``__exit__``."""

    seconds = 0.0
    cpu = 0.0

    def __enter__(self) -> Phase:
        self._cpu0 = self._cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu = self._cpu() - self._cpu0

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


def clients() -> dict[str, Any]:
    from benchmarks.delivery.mailsdk_clients import CLIENTS as OURS
    from benchmarks.delivery.peers import CLIENTS as PEERS

    return {**PEERS, **OURS}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    run = clients()[spec["client"]]
    phase = Phase()
    delivered = run(spec, phase)
    print(
        json.dumps(
            {
                "delivered": delivered,
                "seconds": phase.seconds,
                "cpu": phase.cpu,
                "otel_sdk_loaded": "opentelemetry.sdk" in sys.modules,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
