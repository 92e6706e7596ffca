"""The pool's own CPU per message: a batch over the pool against one ``send_many``, same run.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.pool_overhead [--messages 3000] [--runs 5] [--connections 8]
    .venv/bin/python -m benchmarks.pool_overhead --prof   # cProfile of one AsyncPool batch
    .venv/bin/python -m benchmarks.pool_overhead --calls  # Python calls per message, all threads

Every case sends the same 2.3 KB message to one recipient on loopback to Postfix's
``smtp-sink`` (a C server, so the client's CPU is what shows). The cases are interleaved and
each figure is the median of ``--runs`` runs (process CPU time per message, microseconds):

* ``send_many``: one session, one ``send_many`` run (the floor the pool builds on);
* ``pool-1``: ``Pool.send_batch`` over one connection (the pool's bookkeeping on top);
* ``pool-N``: ``Pool.send_batch`` over N connections;
* ``async send_many``, ``async pool-1``, ``async pool-N``: the same with the asyncio client.

``pool-1 - send_many`` is the bookkeeping per message (outcomes, progress, locks, scheduler).
cProfile sees one thread only, so ``--prof`` profiles the asyncio runner (one thread; its
structure is the blocking runner's twin).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import threading
import time
import types
from collections.abc import Callable

import mailsdk
from benchmarks.delivery.servers import SmtpSink
from benchmarks.delivery.workload import HELO, SENDER, message, recipients


def _client(port: int) -> mailsdk.Client:
    return (
        mailsdk.ClientBuilder.smtp("127.0.0.1", port)
        .with_tls("none")
        .with_local_hostname(HELO)
        .build()
    )


def _items(n: int) -> list[mailsdk.Outgoing]:
    body, rcpts = message(), recipients(1)
    return [mailsdk.Outgoing(body, sender=SENDER, recipients=rcpts) for _ in range(n)]


def send_many(port: int, n: int) -> float:
    items = _items(n)
    with _client(port).connect() as session:
        started = time.process_time()
        ok = sum(o.ok for o in session.send_many(items))
        spent = time.process_time() - started
    assert ok == n, ok
    return spent


def pool(port: int, n: int, connections: int) -> float:
    items = _items(n)
    with _client(port).pool(max_connections=connections, max_messages_per_connection=None) as p:
        # Open the connections first, so connection set-up is not counted.
        slots = [p.checkout() for _ in range(connections)]
        for slot in slots:
            p.checkin(slot, sent=0)
        started = time.process_time()
        ok = sum(o.ok for o in p.send_batch(items))
        spent = time.process_time() - started
    assert ok == n, ok
    return spent


def _aclient(port: int) -> mailsdk.AsyncClient:
    return (
        mailsdk.ClientBuilder.smtp("127.0.0.1", port)
        .with_tls("none")
        .with_local_hostname(HELO)
        .build_async()
    )


async def _asend_many(port: int, n: int) -> float:
    items = _items(n)
    async with await _aclient(port).connect() as session:
        started = time.process_time()
        ok = 0
        async for outcome in session.send_many(items):
            ok += outcome.ok
        spent = time.process_time() - started
    assert ok == n, ok
    return spent


async def _apool(port: int, n: int, connections: int) -> float:
    items = _items(n)
    client = _aclient(port)
    async with client.pool(max_connections=connections, max_messages_per_connection=None) as p:
        slots = [await p.checkout() for _ in range(connections)]
        for slot in slots:
            await p.checkin(slot, sent=0)
        started = time.process_time()
        ok = 0
        async for outcome in p.send_batch(items):
            ok += outcome.ok
        spent = time.process_time() - started
    assert ok == n, ok
    return spent


def count_calls(case: Callable[[], object], n: int) -> float:
    """Python function calls per message while ``case`` runs, in every thread (deterministic,
    unlike CPU time on a shared machine)."""
    calls = [0]

    def hook(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call":
            calls[0] += 1

    threading.setprofile(hook)  # type: ignore[arg-type]
    sys.setprofile(hook)  # type: ignore[arg-type]
    try:
        case()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return calls[0] / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--prof", action="store_true", help="profile one pool-N batch")
    parser.add_argument("--calls", action="store_true", help="Python calls per message")
    args = parser.parse_args()
    n, conns = args.messages, args.connections
    with SmtpSink() as sink:
        if args.prof:
            profile = cProfile.Profile()
            profile.enable()
            asyncio.run(_apool(sink.port, n, conns))
            profile.disable()
            stats = pstats.Stats(profile)
            calls = stats.total_calls / n  # type: ignore[attr-defined]
            print(f"Python calls per message: {calls:.0f}")
            stats.sort_stats("tottime").print_stats(40)
            return
        cases = {
            "send_many": lambda: send_many(sink.port, n),
            "pool-1": lambda: pool(sink.port, n, 1),
            f"pool-{conns}": lambda: pool(sink.port, n, conns),
            "async send_many": lambda: asyncio.run(_asend_many(sink.port, n)),
            "async pool-1": lambda: asyncio.run(_apool(sink.port, n, 1)),
            f"async pool-{conns}": lambda: asyncio.run(_apool(sink.port, n, conns)),
        }
        if args.calls:
            for name, case in cases.items():
                print(f"{name:18s} {count_calls(case, n):7.1f} Python calls/msg")
            return
        runs: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, case in cases.items():
                runs[name].append(case() / n * 1e6)
    for name, values in runs.items():
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{name:18s} {statistics.median(values):7.1f} us/msg CPU (min-max {spread})")
    for prefix in ("", "async "):
        extra = statistics.median(runs[f"{prefix}pool-1"]) - statistics.median(
            runs[f"{prefix}send_many"]
        )
        print(f"{prefix}bookkeeping: {extra:.1f} us/msg ({prefix}pool-1 - {prefix}send_many)")


if __name__ == "__main__":
    main()
