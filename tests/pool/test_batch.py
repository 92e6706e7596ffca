"""send_batch in both modes against aiosmtpd and fault-injecting servers: one final outcome per
message, nothing the server took is sent twice, UNKNOWN never resent, retries per recipient."""

from __future__ import annotations

import asyncio
import io
import json
import time
import typing
from collections.abc import Callable

import pytest
from tests._support.faulty_smtpd import FaultyServer, recipients_for
from tests._support.modes import Mode, plain_builder
from tests._support.smtpd import SmtpdServer
from tests.pool.conftest import run_batch

import mailsdk
from mailsdk import DeliveryStatus, Outgoing
from mailsdk.batch import Progress, RetryPolicy, TokenBucket

FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, jitter=0.0, throttle_delay=0.02)
#: For runs with many faults: a message pipelined behind a fault that broke its connection
#: uses a try too, and may sit behind several faults in turn.
PATIENT_RETRY = RetryPolicy(attempts=6, backoff=0.01, jitter=0.0, throttle_delay=0.02)


def message(index: int, recipients: int = 1) -> Outgoing:
    body = f"Subject: m{index}\r\nX-Idx: {index}\r\n\r\nhello {index}\r\n".encode()
    return Outgoing(
        body, sender="s@x.test", recipients=recipients_for(index, recipients), key=f"k{index}"
    )


def by_index(outcomes: typing.Sequence[typing.Any]) -> dict[int, typing.Any]:
    seen = {o.index: o for o in outcomes}
    assert len(seen) == len(outcomes), "an item got more than one outcome"
    return seen


async def test_batch_delivers_every_message_once(mode: Mode, smtpd: SmtpdServer) -> None:
    events: list[Progress] = []
    items = [message(i) for i in range(120)]
    outcomes, report = await run_batch(
        mode,
        plain_builder(smtpd.host, smtpd.port),
        items,
        pool={"max_connections": 3},
        on_progress=events.append,
    )
    assert sorted(by_index(outcomes)) == list(range(120))
    assert all(o.status is DeliveryStatus.ACCEPTED and o.attempts == 1 for o in outcomes)
    assert {o.key for o in outcomes} == {f"k{i}" for i in range(120)}
    bodies = [m.content for m in smtpd.recorder.messages]
    assert sorted(b.split(b"X-Idx: ")[1].split(b"\r\n")[0] for b in bodies) == sorted(
        str(i).encode() for i in range(120)
    )
    assert report.counts[DeliveryStatus.ACCEPTED] == 120 and report.total == 120
    assert report.p50 is not None and report.p99 is not None and report.p50 <= report.p99
    assert [e.done for e in events] == list(range(1, 121))
    assert events[-1].total == 120 and events[-1].eta == 0.0 and events[-1].in_flight == 0
    out = io.StringIO()
    assert report.to_jsonl(out) == 120
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {line["index"] for line in lines} == set(range(120))
    assert all(line["status"] == "accepted" and line["queue_id"] for line in lines)


async def test_ordered_and_lazy_input(mode: Mode, smtpd: SmtpdServer) -> None:
    pulled: list[int] = []

    def generate() -> typing.Iterator[Outgoing]:
        for i in range(40):
            pulled.append(i)
            yield message(i)

    outcomes, report = await run_batch(
        mode, plain_builder(smtpd.host, smtpd.port), generate(), ordered=True
    )
    assert [o.index for o in outcomes] == list(range(40))
    assert pulled == list(range(40))
    assert report.counts[DeliveryStatus.ACCEPTED] == 40
    assert report.by_status[DeliveryStatus.ACCEPTED][0].index in range(40)


FAULTS = {
    1: "rcpt4xx",
    2: "data421",
    3: "drop_before",
    4: "drop_after",
    5: "perm",
    6: "rcpt_one4xx",
    7: "slow",
    8: "silent",
    11: "drop_after",
    12: "data421",
}
EXPECTED = {
    1: (DeliveryStatus.ACCEPTED, 2),
    2: (DeliveryStatus.ACCEPTED, 2),
    3: (DeliveryStatus.ACCEPTED, 2),
    4: (DeliveryStatus.UNKNOWN, 1),
    5: (DeliveryStatus.REFUSED, 1),
    6: (DeliveryStatus.ACCEPTED, 2),
    7: (DeliveryStatus.ACCEPTED, 1),
    8: (DeliveryStatus.UNKNOWN, 1),
    11: (DeliveryStatus.UNKNOWN, 1),
    12: (DeliveryStatus.ACCEPTED, 2),
}


async def test_faults_every_message_one_outcome(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty(FAULTS, silent_for=1.5)
    builder = plain_builder(server.host, server.port).with_timeouts(0.75)
    items = [message(i, recipients=2) for i in range(30)]
    outcomes, report = await run_batch(
        mode, builder, items, pool={"max_connections": 3}, retry=PATIENT_RETRY
    )
    seen = by_index(outcomes)
    assert sorted(seen) == list(range(30))
    for index, outcome in seen.items():
        status, attempts = EXPECTED.get(index, (DeliveryStatus.ACCEPTED, 1))
        assert outcome.status is status, (index, outcome)
        # A message pipelined behind a fault that broke the connection was in flight: it takes
        # more tries (and its own fault may only play on a later one).
        assert attempts <= outcome.attempts <= PATIENT_RETRY.attempts, (index, outcome)
    assert seen[6].result is not None and set(seen[6].result.accepted) == set(recipients_for(6, 2))
    assert seen[5].error is not None and not seen[5].error.is_retryable
    kept = server.handler.kept
    rcpts = server.handler.kept_rcpt
    assert all(n == 1 for n in rcpts.values()), rcpts  # nothing the server took was sent twice
    unknown = {o.index for o in outcomes if o.status is DeliveryStatus.UNKNOWN}
    assert unknown == {4, 8, 11}
    assert set(kept) == set(range(30)) - {5}
    assert report.counts[DeliveryStatus.UNKNOWN] == 3


@pytest.mark.timeout(180)  # about 10 s per mode on an idle box; CI machines are shared
async def test_ten_thousand_messages_with_faults(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    kinds = ["rcpt4xx", "data421", "drop_before", "drop_after", "perm", "rcpt_one4xx"]
    faults = {i: kinds[(i // 97) % len(kinds)] for i in range(0, 10_000, 97)}
    server = faulty(faults)
    items = (message(i, recipients=2) for i in range(10_000))
    started = time.monotonic()
    outcomes, report = await run_batch(
        mode,
        plain_builder(server.host, server.port),
        items,
        pool={"max_connections": 8},
        retry=PATIENT_RETRY,
    )
    seen = by_index(outcomes)
    assert len(seen) == 10_000
    expected_unknown = {i for i, k in faults.items() if k == "drop_after"}
    expected_refused = {i for i, k in faults.items() if k == "perm"}
    assert {i for i, o in seen.items() if o.status is DeliveryStatus.UNKNOWN} == expected_unknown
    assert {i for i, o in seen.items() if o.status is DeliveryStatus.REFUSED} == expected_refused
    accepted = 10_000 - len(expected_unknown) - len(expected_refused)
    assert report.counts[DeliveryStatus.ACCEPTED] == accepted
    assert all(n == 1 for n in server.handler.kept_rcpt.values())
    assert report.total == 10_000 and not report.cancelled
    assert time.monotonic() - started < 120  # a generous bound: a hang must fail, not block CI


async def test_rate_limit_is_shared_by_every_connection(mode: Mode, smtpd: SmtpdServer) -> None:
    bucket = TokenBucket(messages_per_second=40, burst=4)
    started = time.monotonic()
    outcomes, _ = await run_batch(
        mode,
        plain_builder(smtpd.host, smtpd.port),
        [message(i) for i in range(24)],
        pool={"max_connections": 4},
        rate=bucket,
    )
    assert len(outcomes) == 24
    assert time.monotonic() - started >= (24 - 4) / 40 * 0.95  # the limit held across 4 connections


async def test_throttling_slows_the_pool_down(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty({0: "data421"})
    policy = RetryPolicy(attempts=2, backoff=0.0, jitter=0.0, throttle_delay=0.4)
    started = time.monotonic()
    outcomes, _ = await run_batch(
        mode,
        plain_builder(server.host, server.port),
        [message(0)],
        retry=policy,
    )
    assert outcomes[0].status is DeliveryStatus.ACCEPTED and outcomes[0].attempts == 2
    assert time.monotonic() - started >= 0.4  # the retry waited for the server's throttle


async def test_no_retry_policy_and_streams_are_never_resent(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty({0: "drop_before", 1: "drop_before", 2: "drop_before"})
    stream = Outgoing(
        iter([b"Subject: s\r\n\r\nbody\r\n"]), sender="s@x.test", recipients=recipients_for(1)
    )
    builder = plain_builder(server.host, server.port)
    never, _ = await run_batch(mode, builder, [message(0)], retry=RetryPolicy.never())
    assert never[0].status is DeliveryStatus.FAILED and never[0].attempts == 1
    outcomes, _ = await run_batch(
        mode, builder, [stream, message(2)], retry=FAST_RETRY, ordered=True,
        pool={"max_connections": 1},
    )  # fmt: skip
    assert (outcomes[0].status, outcomes[0].attempts) == (DeliveryStatus.FAILED, 1)  # one-shot
    assert (outcomes[1].status, outcomes[1].attempts) == (DeliveryStatus.ACCEPTED, 2)


async def test_cancellation_gives_every_read_item_a_final_outcome(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty(dict.fromkeys(range(200), "slow"), slow_for=0.01)
    client = mode.build(plain_builder(server.host, server.port))
    items = (message(i) for i in range(10_000))
    got = []
    if mode.is_async:

        async def consume(run: typing.Any) -> None:
            async for outcome in run:
                got.append(outcome)

        async with client.pool(max_connections=2) as apool:  # type: ignore[union-attr]
            arun = apool.send_batch(items, retry=FAST_RETRY)
            task = asyncio.ensure_future(consume(arun))
            while len(got) < 5:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await arun.aclose()
            report = arun.report
    else:
        with client.pool(max_connections=2) as spool:  # type: ignore[union-attr]
            with spool.send_batch(items, retry=FAST_RETRY) as run:
                for outcome in run:
                    got.append(outcome)
                    if len(got) == 5:
                        break
            report = run.report
    assert report.cancelled
    indexes = [o.index for o in report.outcomes]
    assert len(indexes) == len(set(indexes))
    assert sorted(indexes) == list(range(len(indexes)))  # every item read has its outcome
    assert len(indexes) < 10_000
    for outcome in report.outcomes:
        if outcome.status is DeliveryStatus.ACCEPTED:
            assert server.handler.kept[outcome.index] == 1
        else:
            assert outcome.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN)
    assert all(n <= 1 for n in server.handler.kept_rcpt.values())


async def test_recipients_per_transaction_limit_splits(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty({0: "rcpt_limit"})
    outcomes, _ = await run_batch(
        mode,
        plain_builder(server.host, server.port),
        [message(0, recipients=5)],
        retry=RetryPolicy.never(),  # a split is no retry: it happens anyway
    )
    (outcome,) = outcomes
    assert outcome.status is DeliveryStatus.ACCEPTED, outcome
    assert outcome.attempts == 3  # 2 + 2 + 1 recipients
    assert outcome.result is not None
    assert sorted(outcome.result.accepted) == sorted(recipients_for(0, 5))
    assert all(n == 1 for n in server.handler.kept_rcpt.values())
    assert len(server.handler.kept_rcpt) == 5


async def test_messages_behind_a_421_are_sent_again_without_using_a_try(
    mode: Mode, faulty: Callable[..., FaultyServer]
) -> None:
    server = faulty({0: "data421"})
    outcomes, _ = await run_batch(
        mode,
        plain_builder(server.host, server.port),
        [message(i) for i in range(10)],
        pool={"max_connections": 1},
        retry=RetryPolicy(attempts=1, throttle_delay=0.05),
        ordered=True,
    )
    assert outcomes[0].status is DeliveryStatus.REFUSED  # the 421 itself, never retried here
    assert outcomes[0].error is not None and outcomes[0].error.is_retryable
    assert [o.status for o in outcomes[1:]] == [DeliveryStatus.ACCEPTED] * 9
    assert all(o.attempts == 1 for o in outcomes[1:])
    assert server.handler.connections == 2


async def test_a_failing_input_generator_is_reported_after_the_items_read(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    def broken() -> typing.Iterator[Outgoing]:
        yield message(0)
        yield message(1)
        raise ValueError("the caller's data source failed")

    client = mode.build(plain_builder(smtpd.host, smtpd.port))
    got: list[typing.Any] = []

    async def consume() -> None:
        if mode.is_async:
            async with client.pool() as apool:  # type: ignore[union-attr]
                async for outcome in apool.send_batch(broken()):
                    got.append(outcome)
        else:
            with client.pool() as spool:  # type: ignore[union-attr]
                got.extend(spool.send_batch(broken()))

    with pytest.raises(ValueError, match="data source failed"):
        await consume()
    assert sorted(o.index for o in got) == [0, 1]
    assert all(o.status is DeliveryStatus.ACCEPTED for o in got)


async def test_lmtp_retries_only_the_recipients_that_failed_after_the_data(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer]
) -> None:
    server = smtpd_factory(lmtp=True, lmtp_fail=["full@x.test"])
    builder = plain_builder(server.host, server.port).with_lmtp()
    item = Outgoing(b"Subject: l\r\n\r\nx\r\n", sender="s@x.test",
                    recipients=("ok@x.test", "full@x.test"))  # fmt: skip
    outcomes, _ = await run_batch(mode, builder, [item], retry=FAST_RETRY)
    (outcome,) = outcomes
    assert outcome.status is DeliveryStatus.PARTIAL and outcome.attempts == 3
    assert outcome.result is not None
    assert outcome.result.accepted == ("ok@x.test",)
    assert list(outcome.result.refused) == ["full@x.test"]
    assert outcome.result.refused["full@x.test"].code == 452
    rcpts = [m.rcpt_tos for m in server.recorder.messages]
    assert rcpts == [["ok@x.test", "full@x.test"], ["full@x.test"], ["full@x.test"]]


class _ScriptedLimiter:
    """A caller's own rate limiter that answers ``reserve`` from a list (the last one repeats)."""

    def __init__(self, *waits: object) -> None:
        self.waits = list(waits)

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        return typing.cast("float", self.waits.pop(0) if len(self.waits) > 1 else self.waits[0])

    def penalize(self, seconds: float) -> None:
        pass


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), "soon"])
async def test_a_limiter_that_returns_no_finite_wait_is_a_typed_error(
    mode: Mode, smtpd: SmtpdServer, bad: object
) -> None:
    # inf used to crash the blocking runner with a bare OverflowError (and to park the message
    # for ever in the async one); NaN silently meant "no limit".
    with pytest.raises(mailsdk.ConfigurationError, match="finite number of seconds"):
        await asyncio.wait_for(
            run_batch(
                mode,
                plain_builder(smtpd.host, smtpd.port),
                [message(i) for i in range(4)],
                rate=_ScriptedLimiter(0.0, bad),
            ),
            timeout=30,
        )
    # the first message was sent once before the limiter broke; none twice
    contents = [m.content for m in smtpd.recorder.messages]
    assert len(contents) == len(set(contents)) <= 1


async def test_a_negative_limiter_wait_means_now(mode: Mode, smtpd: SmtpdServer) -> None:
    outcomes, _ = await run_batch(
        mode,
        plain_builder(smtpd.host, smtpd.port),
        [message(i) for i in range(4)],
        rate=_ScriptedLimiter(-5.0),
    )
    assert sorted((o.index, o.status) for o in outcomes) == [
        (i, DeliveryStatus.ACCEPTED) for i in range(4)
    ]


def test_close_from_inside_on_progress_stops_a_blocking_batch(smtpd: SmtpdServer) -> None:
    """``run.close()`` called by the progress callback (which runs inside the iteration) used
    to raise ``ValueError: generator already executing``; it now ends the iteration once the
    callback returns, with every outcome in the report."""
    client = plain_builder(smtpd.host, smtpd.port).build()
    runs: list[typing.Any] = []

    def stop_at_five(progress: Progress) -> None:
        if progress.done == 5:
            runs[0].close()

    with client.pool(max_connections=2) as pool:
        run = pool.send_batch([message(i) for i in range(2000)], on_progress=stop_at_five)
        runs.append(run)
        got = list(run)
    report = run.report
    assert len(got) == 4  # the fifth outcome is recorded; the iteration ended at it
    assert report.cancelled and report.total < 2000
    assert len({o.index for o in report.outcomes}) == report.total
    delivered = report.counts[DeliveryStatus.ACCEPTED]
    assert len(smtpd.recorder.messages) == delivered
