"""Adversarial pass: servers that stall or lie mid-batch, races on pooled sessions, Ctrl-C."""

from __future__ import annotations

import asyncio
import threading
import typing
from collections.abc import Callable

import pytest
from tests._support.faulty_smtpd import FaultyServer, recipients_for
from tests._support.modes import Mode, plain_builder
from tests.pool.conftest import run_batch
from tests.pool.test_batch import by_index, message

import mailsdk
from mailsdk import DeliveryStatus
from mailsdk.batch import Progress, RetryPolicy


async def test_stalls_and_lies_mid_batch(mode: Mode, faulty: Callable[..., FaultyServer]) -> None:
    faults = {
        2: "silent_rcpt",
        5: "garbage_after",
        9: "silent",
        13: "drop_after",
        16: "double_reply",
    }
    server = faulty(faults, silent_for=1.2)
    outcomes, report = await run_batch(
        mode,
        plain_builder(server.host, server.port).with_timeouts(0.6),
        [message(i) for i in range(20)],
        pool={"max_connections": 2},
        # More tries than usual: a message may sit behind several of the faults in turn.
        retry=RetryPolicy(attempts=6, backoff=0.01, jitter=0.0, throttle_delay=0.02),
    )
    seen = by_index(outcomes)
    assert sorted(seen) == list(range(20))
    # (a message pipelined behind another fault that broke its connection takes one more try)
    assert seen[2].status is DeliveryStatus.ACCEPTED and seen[2].attempts >= 2  # RCPT stall
    for index in (5, 9, 13):  # the server had the message: never resent
        assert seen[index].status is DeliveryStatus.UNKNOWN, seen[index]
        assert isinstance(seen[index].error, mailsdk.DeliveryUnknown)
    # After an unsolicited extra reply the client may judge the message accepted, or (the
    # replies being out of step) UNKNOWN: both are honest, and it is never sent again.
    assert seen[16].status in (DeliveryStatus.ACCEPTED, DeliveryStatus.UNKNOWN)
    assert all(n == 1 for n in server.handler.kept_rcpt.values())
    others = {i: o.status for i, o in seen.items() if o.status is not DeliveryStatus.ACCEPTED}
    assert set(others) <= {5, 9, 13, 16}, others
    assert report.counts[DeliveryStatus.ACCEPTED] == 20 - len(others)


async def test_a_pooled_session_never_has_two_callers(
    mode: Mode, faulty: Callable[..., FaultyServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instrument every session: a second caller entering a busy session fails the test."""
    server = faulty()
    in_use: set[int] = set()
    overlaps: list[int] = []
    lock = threading.Lock()
    cls = mailsdk.AsyncSession if mode.is_async else mailsdk.Session
    original = cls.send_message

    def enter(session: object) -> None:
        with lock:
            if id(session) in in_use:
                overlaps.append(id(session))
            in_use.add(id(session))

    def leave(session: object) -> None:
        with lock:
            in_use.discard(id(session))

    if mode.is_async:

        async def guarded_async(
            self: typing.Any, *args: typing.Any, **kw: typing.Any
        ) -> typing.Any:
            enter(self)
            try:
                await asyncio.sleep(0)  # give another task the chance to barge in
                return await original(self, *args, **kw)
            finally:
                leave(self)

        monkeypatch.setattr(cls, "send_message", guarded_async)
    else:

        def guarded(self: typing.Any, *args: typing.Any, **kw: typing.Any) -> typing.Any:
            enter(self)
            try:
                return original(self, *args, **kw)
            finally:
                leave(self)

        monkeypatch.setattr(cls, "send_message", guarded)

    client = mode.build(plain_builder(server.host, server.port))
    msg = b"Subject: race\r\n\r\nx\r\n"
    if mode.is_async:
        async with client.pool(max_connections=3) as apool:  # type: ignore[union-attr]

            async def one(i: int) -> mailsdk.SendResult:
                return await apool.send_message(msg, sender="s@x.test", recipients=[f"r{i}@x.test"])

            batch = apool.send_batch([message(i) for i in range(60)])
            results, outcomes = await asyncio.gather(
                asyncio.gather(*(one(i) for i in range(60))), _collect(batch)
            )
    else:
        with client.pool(max_connections=3) as spool:  # type: ignore[union-attr]
            results = []
            errors: list[BaseException] = []

            def worker(i: int) -> None:
                try:
                    results.append(
                        spool.send_message(msg, sender="s@x.test", recipients=[f"r{i}@x.test"])
                    )
                except BaseException as exc:  # re-raised below
                    errors.append(exc)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(60)]
            for t in threads:
                t.start()
            outcomes = list(spool.send_batch([message(i) for i in range(60)]))
            for t in threads:
                t.join()
            assert not errors
    assert not overlaps
    assert len(results) == 60 and all(r.ok for r in results)
    assert len(outcomes) == 60 and all(o.ok for o in outcomes)
    assert server.handler.max_open <= 3


async def _collect(run: typing.Any) -> list[typing.Any]:
    return [o async for o in run]


def test_ctrl_c_reports_every_read_message(faulty: Callable[..., FaultyServer]) -> None:
    """KeyboardInterrupt in the consuming thread: the workers finish what they sent, the rest
    ends FAILED or UNKNOWN, and the report holds every message that was read."""
    server = faulty(dict.fromkeys(range(10000), "slow"), slow_for=0.005)
    client = plain_builder(server.host, server.port).build()

    def interrupt(progress: Progress) -> None:
        if progress.done >= 10:  # every later call too: the report must still be complete
            raise KeyboardInterrupt

    with client.pool(max_connections=3) as pool:
        run = pool.send_batch((message(i) for i in range(10_000)), on_progress=interrupt)
        with pytest.raises(KeyboardInterrupt):
            for _ in run:
                pass
    report = run.report
    assert report.cancelled
    indexes = sorted(o.index for o in report.outcomes)
    assert indexes == list(range(len(indexes))) and 10 <= len(indexes) < 10_000
    for outcome in report.outcomes:
        kept = server.handler.kept[outcome.index]
        if outcome.status is DeliveryStatus.ACCEPTED:
            assert kept == 1
        elif outcome.status is DeliveryStatus.FAILED:
            assert kept == 0  # FAILED means never handed over
        else:
            assert outcome.status is DeliveryStatus.UNKNOWN


async def test_every_recipient_refused_temporarily_then_permanently(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty({0: "rcpt4xx", 1: "perm"})
    outcomes, _ = await run_batch(
        mode,
        plain_builder(server.host, server.port),
        [message(0, recipients=3), message(1, recipients=3)],
        retry=RetryPolicy(attempts=2, backoff=0.0, jitter=0.0),
        ordered=True,
    )
    assert outcomes[0].status is DeliveryStatus.ACCEPTED and outcomes[0].attempts == 2
    assert outcomes[0].result is not None
    assert set(outcomes[0].result.accepted) == set(recipients_for(0, 3))
    assert outcomes[1].status is DeliveryStatus.REFUSED and outcomes[1].attempts == 1
    assert isinstance(outcomes[1].error, mailsdk.RecipientsRefused)


async def test_a_session_cancelled_mid_send_is_never_reused(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty({0: "slow"}, slow_for=1.0)
    client = plain_builder(server.host, server.port).build_async()
    async with client.pool(max_connections=1) as pool:
        task = asyncio.ensure_future(
            pool.send_message(b"Subject: x\r\n\r\ny\r\n", sender="s@x.test",
                              recipients=list(recipients_for(0)))
        )  # fmt: skip
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats() == {"open": 0, "idle": 0, "busy": 0}
        result = await pool.send_message(
            b"Subject: x\r\n\r\ny\r\n", sender="s@x.test", recipients=list(recipients_for(1))
        )
    assert result.ok
    assert server.handler.connections == 2


async def test_close_while_sending_never_hangs_or_leaks(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty(dict.fromkeys(range(100), "slow"), slow_for=0.02)
    client = mode.build(plain_builder(server.host, server.port))
    pool = client.pool(max_connections=3)
    outcomes: list[object] = []
    msg = b"Subject: c\r\n\r\nx\r\n"
    if mode.is_async:

        async def one(i: int) -> None:
            try:
                outcomes.append(
                    await pool.send_message(msg, sender="s@x.test", recipients=[f"m{i}-0@x.test"])
                )
            except mailsdk.MailError as exc:
                outcomes.append(exc)

        tasks = [asyncio.ensure_future(one(i)) for i in range(30)]
        await asyncio.sleep(0.05)
        await pool.aclose()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    else:

        def one(i: int) -> None:
            try:
                outcomes.append(
                    pool.send_message(msg, sender="s@x.test", recipients=[f"m{i}-0@x.test"])
                )
            except mailsdk.MailError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        await asyncio.sleep(0.05)
        pool.close()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 30
    refused = [o for o in outcomes if isinstance(o, mailsdk.MailError)]
    assert all("closed" in str(e) for e in refused)
    assert pool.stats() == {"open": 0, "idle": 0, "busy": 0}
    delivered = [o for o in outcomes if isinstance(o, mailsdk.SendResult)]
    assert len(server.handler.kept_rcpt) == len(delivered)


async def test_wrong_credentials_abort_the_batch_after_one_try(
    mode: Mode, smtpd_factory: Callable[..., typing.Any]
) -> None:
    server = smtpd_factory(users={"me": "right"}, auth_require_tls=False)
    builder = plain_builder(server.host, server.port).with_credentials(
        "me", "wrong", allow_plaintext=True
    )
    client = mode.build(builder)
    got: list[typing.Any] = []
    runs: list[typing.Any] = []

    async def consume() -> typing.Any:
        if mode.is_async:
            async with client.pool(max_connections=2) as apool:  # type: ignore[union-attr]
                arun = apool.send_batch(message(i) for i in range(1000))
                runs.append(arun)
                try:
                    async for outcome in arun:
                        got.append(outcome)
                finally:
                    await arun.aclose()
                return arun.report
        with client.pool(max_connections=2) as spool:  # type: ignore[union-attr]
            run = spool.send_batch(message(i) for i in range(1000))
            runs.append(run)
            try:
                got.extend(run)
            finally:
                run.close()
            return run.report

    with pytest.raises(mailsdk.AuthenticationFailed):
        await consume()
    logins = len(server.recorder.auth_logins)
    assert 1 <= logins <= 2  # one per worker at most: never one per message
    assert not server.recorder.messages
    report = runs[0].report
    indexes = sorted(o.index for o in report.outcomes)
    assert indexes == list(range(len(indexes))) and 1 <= len(indexes) <= 4
    assert report.cancelled
    assert all(not o.status.delivered for o in report.outcomes)
