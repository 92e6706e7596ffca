"""mailsdk's clients, each run inside :mod:`.worker`: sendmail loops, send_many, the pool.

``send_many`` (issue 10) and the pool with ``send_batch`` (issue 11) are used when the installed
mailsdk has them (:func:`has_send_many`, :func:`has_pool`); the runner leaves those clients out
otherwise, so the harness measures today's ``sendmail`` loop until they land.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mailsdk
from benchmarks.delivery.peers import Phase, run_threads
from benchmarks.delivery.workload import HELO, SENDER, message, recipients, split


def has_send_many() -> bool:
    return hasattr(mailsdk.Session, "send_many") and hasattr(mailsdk.AsyncSession, "send_many")


def has_pool() -> bool:
    return hasattr(mailsdk.Client, "pool") and hasattr(mailsdk.AsyncClient, "pool")


def has_process_pool() -> bool:
    import inspect

    from mailsdk.pool import Pool

    return "processes" in inspect.signature(Pool.send_batch).parameters


def _builder(spec: dict[str, Any]) -> mailsdk.ClientBuilder:
    builder = (
        mailsdk.ClientBuilder.smtp(spec["host"], spec["port"])
        .with_tls("none")
        .with_local_hostname(HELO)
    )
    if spec.get("otel"):
        # The global providers: with no SDK configured, the API's no-op proxy.
        builder = builder.with_opentelemetry()
    return builder


def _item(spec: dict[str, Any]) -> mailsdk.Outgoing:
    return mailsdk.Outgoing(message(), sender=SENDER, recipients=recipients(spec["recipients"]))


def _accepted(outcome: mailsdk.SendOutcome) -> int:
    return int(outcome.status is mailsdk.DeliveryStatus.ACCEPTED)


def _sync_sessions(
    spec: dict[str, Any], phase: Phase, send: Callable[[mailsdk.Session, int], int]
) -> int:
    client = _builder(spec).build()
    sessions = [client.connect() for _ in range(spec["connections"])]
    counts = split(spec["messages"], len(sessions))
    jobs = [lambda s=s, n=n: send(s, n) for s, n in zip(sessions, counts, strict=True)]
    with phase:
        done = run_threads(jobs)
    for s in sessions:
        s.quit()
    return done


def _async_sessions(spec: dict[str, Any], phase: Phase, send: Any) -> int:
    async def main() -> int:
        client = _builder(spec).build_async()
        sessions = [await client.connect() for _ in range(spec["connections"])]
        counts = split(spec["messages"], len(sessions))
        with phase:
            done = sum(
                await asyncio.gather(*(send(s, n) for s, n in zip(sessions, counts, strict=True)))
            )
        for s in sessions:
            await s.quit()
        return done

    return asyncio.run(main())


def sendmail_sync(spec: dict[str, Any], phase: Phase) -> int:
    msg, rcpts = message(), recipients(spec["recipients"])

    def send(session: mailsdk.Session, n: int) -> int:
        return sum(not session.sendmail(SENDER, rcpts, msg).refused for _ in range(n))

    return _sync_sessions(spec, phase, send)


def sendmail_async(spec: dict[str, Any], phase: Phase) -> int:
    msg, rcpts = message(), recipients(spec["recipients"])

    async def send(session: mailsdk.AsyncSession, n: int) -> int:
        ok = 0
        for _ in range(n):
            ok += not (await session.sendmail(SENDER, rcpts, msg)).refused
        return ok

    return _async_sessions(spec, phase, send)


def send_many_sync(spec: dict[str, Any], phase: Phase) -> int:
    item = _item(spec)

    def send(session: Any, n: int) -> int:
        return sum(_accepted(o) for o in session.send_many(itertools.repeat(item, n)))

    return _sync_sessions(spec, phase, send)


def send_many_async(spec: dict[str, Any], phase: Phase) -> int:
    item = _item(spec)

    async def send(session: Any, n: int) -> int:
        return sum([_accepted(o) async for o in session.send_many(itertools.repeat(item, n))])

    return _async_sessions(spec, phase, send)


def _rate(spec: dict[str, Any]) -> Any:
    if not spec.get("rate"):
        return None
    from mailsdk.batch import TokenBucket  # type: ignore[attr-defined,unused-ignore]

    return TokenBucket(**spec["rate"])


def _warmup(spec: dict[str, Any]) -> int:
    """Messages sent through the pool before the timed phase, so that it has opened its
    connections (the peers open theirs before the phase too): one per connection."""
    return spec["connections"] if spec.get("warmup", True) else 0


def pool_sync(spec: dict[str, Any], phase: Phase) -> int:
    item, rate = _item(spec), _rate(spec)
    client: Any = _builder(spec).build()
    with client.pool(max_connections=spec["connections"]) as pool:
        if warm := _warmup(spec):
            phase.notes["warmup"] = sum(
                _accepted(o) for o in pool.send_batch(itertools.repeat(item, warm))
            )
        with phase:
            batch = pool.send_batch(itertools.repeat(item, spec["messages"]), rate=rate)
            return sum(_accepted(o) for o in batch)


def pool_processes(spec: dict[str, Any], phase: Phase) -> int:
    """The pool spread over two worker processes (``send_batch(processes=2)``), the same total
    of connections; the input is a list, which the forked workers read without pickling. The
    workers open their connections inside the timed phase (they are new processes), and their
    CPU is counted (``Phase`` adds the reaped children's)."""
    item, rate = _item(spec), _rate(spec)
    client: Any = _builder(spec).build()
    with client.pool(max_connections=spec["connections"]) as pool, phase:
        batch = pool.send_batch([item] * spec["messages"], rate=rate, processes=2)
        return sum(_accepted(o) for o in batch)


def pool_async(spec: dict[str, Any], phase: Phase) -> int:
    item, rate = _item(spec), _rate(spec)

    async def main() -> int:
        client: Any = _builder(spec).build_async()
        async with client.pool(max_connections=spec["connections"]) as pool:
            if warm := _warmup(spec):
                warmup = pool.send_batch(itertools.repeat(item, warm))
                phase.notes["warmup"] = sum([_accepted(o) async for o in warmup])
            with phase:
                batch = pool.send_batch(itertools.repeat(item, spec["messages"]), rate=rate)
                return sum([_accepted(o) async for o in batch])

    return asyncio.run(main())


def big_path(spec: dict[str, Any], phase: Phase) -> int:
    """The 100 MB message given as a path (streamed) once send_many's sources exist; before
    that the only way is today's: read it into memory and send the bytes."""
    path, rcpts = Path(spec["path"]), recipients(spec["recipients"])
    client = _builder(spec).build()
    with client.connect() as session, phase:
        if has_send_many():
            try:
                source: Any = path
                result = session.send_message(source, sender=SENDER, recipients=rcpts)
                phase.notes = {"source": "path (streamed)"}
                return int(not result.refused)
            except (mailsdk.InvalidInputError, TypeError) as exc:
                reason = f"path refused: {type(exc).__name__}"
        else:
            reason = "no streamed sources yet"
        phase.notes = {"source": f"bytes (read whole: {reason})"}
        result = session.sendmail(SENDER, rcpts, path.read_bytes())
        return int(not result.refused)


def idle(spec: dict[str, Any], phase: Phase) -> int:
    """The RSS baseline: an interpreter with mailsdk (and this harness) imported, nothing sent."""
    with phase:
        return 0


CLIENTS: dict[str, Callable[[dict[str, Any], Phase], int]] = {
    "mailsdk-sendmail": sendmail_sync,
    "mailsdk-sendmail-async": sendmail_async,
    "mailsdk-send_many": send_many_sync,
    "mailsdk-send_many-async": send_many_async,
    "mailsdk-pool": pool_sync,
    "mailsdk-pool-async": pool_async,
    "mailsdk-pool-2proc": pool_processes,
    "mailsdk-path": big_path,
    "idle": idle,
}
