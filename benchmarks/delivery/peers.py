"""The peers' clients, each run inside :mod:`.worker`: smtplib, aiosmtplib, the raw reference.

Every client has the same shape: open its connections, then inside ``phase`` (the timed and
CPU-measured part) send its share of the messages on each, then QUIT. It returns how many
messages the server confirmed. Several connections run as threads (smtplib) or tasks.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from benchmarks.delivery.rawclient import RawSession
from benchmarks.delivery.workload import HELO, SENDER, message, recipients, split


class Phase(Protocol):
    """The timed phase (:class:`benchmarks.delivery.worker.Phase`); ``notes`` go in the report."""

    notes: dict[str, Any]

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


def run_threads(jobs: list[Callable[[], int]]) -> int:
    """Run each job in its own thread (all started together); the sum of their results."""
    if len(jobs) == 1:
        return jobs[0]()
    results = [0] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(results)


def smtplib_client(spec: dict[str, Any], phase: Phase) -> int:
    msg, rcpts = message(), recipients(spec["recipients"])
    conns = []
    for _ in range(spec["connections"]):
        c = smtplib.SMTP(spec["host"], spec["port"], local_hostname=HELO, timeout=60)
        c.ehlo()
        conns.append(c)

    def job(conn: smtplib.SMTP, n: int) -> Callable[[], int]:
        def send() -> int:
            ok = 0
            for _ in range(n):
                refused = conn.sendmail(SENDER, rcpts, msg)
                ok += not refused
            return ok

        return send

    with phase:
        done = run_threads(
            [job(c, n) for c, n in zip(conns, split(spec["messages"], len(conns)), strict=True)]
        )
    for c in conns:
        c.quit()
    return done


def aiosmtplib_client(spec: dict[str, Any], phase: Phase) -> int:
    import aiosmtplib

    msg, rcpts = message(), recipients(spec["recipients"])

    async def main() -> int:
        conns = []
        for _ in range(spec["connections"]):
            c = aiosmtplib.SMTP(
                hostname=spec["host"],
                port=spec["port"],
                local_hostname=HELO,
                use_tls=False,
                start_tls=False,
                timeout=60,
            )
            await c.connect()
            conns.append(c)

        async def send(conn: aiosmtplib.SMTP, n: int) -> int:
            ok = 0
            for _ in range(n):
                refused, _reply = await conn.sendmail(SENDER, rcpts, msg)
                ok += not refused
            return ok

        with phase:
            counts = split(spec["messages"], len(conns))
            done = sum(
                await asyncio.gather(*(send(c, n) for c, n in zip(conns, counts, strict=True)))
            )
        for c in conns:
            await c.quit()
        return done

    return asyncio.run(main())


def raw_client(spec: dict[str, Any], phase: Phase) -> int:
    msg, rcpts = message(), recipients(spec["recipients"])

    async def main() -> int:
        conns = [RawSession(spec["host"], spec["port"]) for _ in range(spec["connections"])]
        for c in conns:
            await c.open()
        with phase:
            counts = split(spec["messages"], len(conns))
            done = sum(
                await asyncio.gather(
                    *(c.send(SENDER, rcpts, msg, n) for c, n in zip(conns, counts, strict=True))
                )
            )
        for c in conns:
            await c.close()
        return done

    return asyncio.run(main())


def smtplib_path(spec: dict[str, Any], phase: Phase) -> int:
    """smtplib's way with a big message on disk: read it whole, send the bytes."""
    path, rcpts = Path(spec["path"]), recipients(spec["recipients"])
    conn = smtplib.SMTP(spec["host"], spec["port"], local_hostname=HELO, timeout=300)
    conn.ehlo()
    with phase:
        refused = conn.sendmail(SENDER, rcpts, path.read_bytes())
    conn.quit()
    return int(not refused)


CLIENTS: dict[str, Callable[[dict[str, Any], Phase], int]] = {
    "smtplib": smtplib_client,
    "aiosmtplib": aiosmtplib_client,
    "raw": raw_client,
    "smtplib-path": smtplib_path,
}
