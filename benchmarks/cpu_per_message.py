"""Client CPU per message and Python calls per message, sync and asyncio, against smtp-sink.

Run from the repository root with the project's venv::

    .venv/bin/python -m benchmarks.cpu_per_message MODES [COUNT] [--prof [SORT [LIMIT]]]

``MODES`` is a comma-separated list of ``send_many``, ``send_many_distinct`` (a new bytes
object per message, as in a mail merge), ``sendmail``, ``smtplib`` (blocking),
``send_many_async``, ``sendmail_async``, ``aiosmtplib``, ``raw`` (the pipelining reference
client), ``pool_async`` and ``aiosmtplib8`` (eight connections). Without ``--prof`` every mode
runs five times, interleaved (so that load on a shared machine hits every mode alike), and the
median process CPU per message is printed. With ``--prof`` each mode runs once under cProfile
(CPU clock) and prints calls per message (cProfile counts every resumption of a coroutine as a
call); with a single mode it also prints the profile, sorted by ``SORT``.

Loopback, one recipient, the 2.3 KB workload message of the delivery benchmark, telemetry off.
"""

from __future__ import annotations

import asyncio
import cProfile
import itertools
import pstats
import smtplib
import sys
import time
from collections.abc import Sequence

import mailsdk
from benchmarks.delivery.rawclient import RawSession
from benchmarks.delivery.servers import SmtpSink
from benchmarks.delivery.workload import HELO, SENDER, message, recipients

BLOCKING = ("send_many", "send_many_distinct", "sendmail", "smtplib")


def _builder(port: int) -> mailsdk.ClientBuilder:
    builder = mailsdk.ClientBuilder.smtp("127.0.0.1", port).with_tls("none")
    return builder.with_local_hostname(HELO)


def _blocking(mode: str, port: int, count: int, msg: bytes, rcpts: Sequence[str]) -> float:
    if mode == "smtplib":
        smtp = smtplib.SMTP("127.0.0.1", port, local_hostname=HELO)
        smtp.ehlo()
        started = time.process_time()
        for _ in range(count):
            smtp.sendmail(SENDER, list(rcpts), msg)
        spent = time.process_time() - started
        smtp.quit()
        return spent
    session = _builder(port).build().connect()
    started = time.process_time()
    if mode in ("send_many", "send_many_distinct"):
        # send_many_distinct: a new bytes object per message (a mail merge), so nothing of the
        # content is reused from the message before (send_many: one message, many envelopes).
        distinct = mode == "send_many_distinct"
        items = (
            mailsdk.Outgoing(
                msg[:-1] + msg[-1:] if distinct else msg, sender=SENDER, recipients=rcpts
            )
            for _ in range(count)
        )
        ok = sum(o.status is mailsdk.DeliveryStatus.ACCEPTED for o in session.send_many(items))
        assert ok == count, ok
    else:
        for _ in range(count):
            session.sendmail(SENDER, rcpts, msg)
    spent = time.process_time() - started
    session.quit()
    return spent


async def _aiosmtplib(port: int, count: int, msg: bytes, rcpts: Sequence[str], conns: int) -> float:
    import aiosmtplib

    clients = [
        aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, local_hostname=HELO, start_tls=False, use_tls=False
        )
        for _ in range(conns)
    ]
    for client in clients:
        await client.connect()

    async def work(client: aiosmtplib.SMTP, n: int) -> None:
        for _ in range(n):
            await client.sendmail(SENDER, list(rcpts), msg)

    started = time.process_time()
    await asyncio.gather(*(work(c, count // conns) for c in clients))
    spent = time.process_time() - started
    for client in clients:
        await client.quit()
    return spent


async def _asynchronous(
    mode: str, port: int, count: int, msg: bytes, rcpts: Sequence[str]
) -> float:
    if mode in ("aiosmtplib", "aiosmtplib8"):
        return await _aiosmtplib(port, count, msg, rcpts, 8 if mode == "aiosmtplib8" else 1)
    if mode == "raw":
        raw = RawSession("127.0.0.1", port)
        await raw.open()
        started = time.process_time()
        assert await raw.send(SENDER, rcpts, msg, count) == count
        spent = time.process_time() - started
        await raw.close()
        return spent
    accepted = mailsdk.DeliveryStatus.ACCEPTED
    if mode == "pool_async":
        item = mailsdk.Outgoing(msg, sender=SENDER, recipients=rcpts)
        async with _builder(port).build_async().pool(max_connections=8) as pool:
            # One message per connection first: the peers open theirs before timing too.
            assert len([o async for o in pool.send_batch(itertools.repeat(item, 8))]) == 8
            started = time.process_time()
            batch = pool.send_batch(itertools.repeat(item, count))
            ok = sum([o.status is accepted async for o in batch])
            spent = time.process_time() - started
        assert ok == count, ok
        return spent
    session = await _builder(port).build_async().connect()
    started = time.process_time()
    if mode == "send_many_async":
        items = (mailsdk.Outgoing(msg, sender=SENDER, recipients=rcpts) for _ in range(count))
        ok = sum([o.status is accepted async for o in session.send_many(items)])
        assert ok == count, ok
    elif mode == "sendmail_async":
        for _ in range(count):
            await session.sendmail(SENDER, rcpts, msg)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    spent = time.process_time() - started
    await session.quit()
    return spent


def run(mode: str, port: int, count: int) -> float:
    """Send ``count`` messages with ``mode``; return the process CPU seconds they took."""
    msg, rcpts = message(), recipients(1)
    if mode in BLOCKING:
        return _blocking(mode, port, count, msg, rcpts)
    return asyncio.run(_asynchronous(mode, port, count, msg, rcpts))


def main(argv: list[str]) -> None:
    """Parse ``argv`` (see the module docstring) and print the figures."""
    modes = argv[0].split(",")
    count = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 3000
    with SmtpSink() as sink:
        if "--prof" in argv:
            extra = argv[argv.index("--prof") + 1 :]
            for mode in modes:
                profile = cProfile.Profile(time.process_time)
                profile.enable()
                run(mode, sink.port, count)
                profile.disable()
                stats = pstats.Stats(profile)
                print(f"{mode:16s} calls/msg {stats.total_calls / count:7.1f}")  # type: ignore[attr-defined]
                if len(modes) == 1:
                    limit = int(extra[1]) if len(extra) > 1 else 45
                    stats.sort_stats(extra[0] if extra else "tottime").print_stats(limit)
            return
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(5):
            for mode in modes:
                results[mode].append(run(mode, sink.port, count) / count * 1e6)
        for mode in modes:
            runs = sorted(results[mode])
            print(f"{mode:16s} cpu us/msg median {runs[2]:7.1f}  {[round(t, 1) for t in runs]}")


if __name__ == "__main__":
    main(sys.argv[1:])
