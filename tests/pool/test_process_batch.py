"""``Pool.send_batch(processes=N)``: a batch over forked worker processes.

Real worker processes against a fault-injecting aiosmtpd server in this (the parent) process:
every item ends in exactly one outcome, nothing the server took is sent twice, a worker killed
mid-batch leaves UNKNOWN outcomes (never resent), and the rate limit is divided, not multiplied.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import typing
from collections.abc import Callable, Iterator

import pytest
from tests._support.engines import ENGINES, builder_for, item, one_each
from tests._support.faulty_smtpd import FaultyServer, recipients_for
from tests._support.modes import plain_builder

from mailsdk import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.batch import Progress, RetryPolicy, TokenBucket
from mailsdk.errors import ConfigurationError, DeliveryUnknown, InvalidInputError, MailError
from mailsdk.pool import ProcessBatchRun

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, jitter=0.0, throttle_delay=0.02)


def test_every_item_is_sent_once_across_processes(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    events: list[Progress] = []
    with client.pool(max_connections=4) as pool:
        run = pool.send_batch([item(i) for i in range(300)], processes=2, on_progress=events.append)
        assert isinstance(run, ProcessBatchRun)
        outcomes = list(run)
    seen = one_each(outcomes, 300)
    assert all(o.status is DeliveryStatus.ACCEPTED for o in seen.values())
    assert {o.key for o in outcomes} == {f"k{i}" for i in range(300)}
    assert all(server.handler.kept[i] == 1 for i in range(300))
    assert server.handler.max_open <= 4  # the connections are divided between the processes
    assert [e.done for e in events] == list(range(1, 301))
    assert events[-1].counts[DeliveryStatus.ACCEPTED] == 300 and events[-1].total == 300
    report = run.report
    assert report.total == 300 and not report.cancelled
    assert report.p50 is not None and report.p50 > 0


def test_a_lazy_input_is_pickled_in_chunks_and_ordered_output_keeps_input_order(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty({7: "rcpt4xx"})
    client = plain_builder(server.host, server.port).build()
    read: list[int] = []

    def lazy() -> Iterator[Outgoing]:
        for i in range(150):
            read.append(i)
            yield item(i)

    with client.pool(max_connections=3) as pool:
        outcomes = list(pool.send_batch(lazy(), processes=3, ordered=True, retry=FAST_RETRY))
    assert [o.index for o in outcomes] == list(range(150))
    assert all(o.status is DeliveryStatus.ACCEPTED for o in outcomes)
    assert outcomes[7].attempts == 2  # retried inside its worker process
    assert read == list(range(150))


def test_an_item_that_cannot_cross_to_a_process_fails_alone(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty()
    client = plain_builder(server.host, server.port).build()

    def lazy() -> Iterator[object]:
        for i in range(20):
            # a generator of chunks cannot be pickled to a worker: that item fails, typed
            chunks = (c for c in [b"Subject: x\r\n\r\n", b"x\r\n"])
            yield Outgoing(chunks, sender="s@x.test", recipients=recipients_for(i)) if i == 5 \
                else item(i)  # fmt: skip

    with client.pool(max_connections=2) as pool:
        seen = one_each(list(pool.send_batch(lazy(), processes=2)), 20)
    assert seen[5].status is DeliveryStatus.FAILED
    assert isinstance(seen[5].error, InvalidInputError)
    assert "worker process" in str(seen[5].error)
    assert server.handler.kept[5] == 0
    assert all(seen[i].status is DeliveryStatus.ACCEPTED for i in range(20) if i != 5)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_killed_worker_leaves_unknown_outcomes_and_nothing_is_resent(
    faulty: Callable[..., FaultyServer], engines: Callable[[], list[str]], engine: str
) -> None:
    # message 40 is received and never answered: a worker is mid-send when it is killed
    server = faulty({40: "silent"}, silent_for=30.0)
    client = builder_for(engine, server.host, server.port).with_timeouts(30.0).build()
    with client.pool(max_connections=2) as pool:
        run = pool.send_batch([item(i) for i in range(2000)], processes=2)
        assert isinstance(run, ProcessBatchRun)
        outcomes: list[SendOutcome] = []

        def killer() -> None:
            deadline = time.monotonic() + 20
            while server.handler.tries[40] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            for worker in run._workers:  # both: whichever holds message 40
                if worker.process.pid is not None:
                    os.kill(worker.process.pid, signal.SIGKILL)

        thread = threading.Thread(target=killer)
        thread.start()
        with pytest.raises(MailError, match="every worker process of the batch stopped"):
            outcomes.extend(run)  # the input was not read to the end: that is an error
        thread.join()
    report = run.report
    assert report.cancelled and report.total < 2000
    seen = {o.index: o for o in report.outcomes}
    assert len(seen) == report.total  # one outcome each
    assert {o.index for o in outcomes} <= set(seen)
    assert seen[40].status is DeliveryStatus.UNKNOWN
    assert isinstance(seen[40].error, DeliveryUnknown)
    unknown = [i for i, o in seen.items() if o.status is DeliveryStatus.UNKNOWN]
    accepted = [i for i, o in seen.items() if o.status is DeliveryStatus.ACCEPTED]
    assert set(unknown) | set(accepted) == set(seen)
    assert sorted(seen) == list(range(len(seen)))  # handed out in order: no gap
    assert all(server.handler.kept[i] == 1 for i in accepted)  # confirmed means the server has it
    assert all(n <= 1 for n in server.handler.kept_rcpt.values())  # and nothing twice
    # (a worker killed on a busy machine before it started sending noted no engine)
    assert engines() and set(engines()) == {engine}


@pytest.mark.parametrize("engine", ENGINES)
def test_closing_early_stops_handing_out_work_and_accounts_for_every_item_read(
    faulty: Callable[..., FaultyServer], engines: Callable[[], list[str]], engine: str
) -> None:
    server = faulty()
    client = builder_for(engine, server.host, server.port).build()
    with client.pool(max_connections=2) as pool:
        with pool.send_batch([item(i) for i in range(5000)], processes=2) as run:
            first = [next(run) for _ in range(10)]
        report = run.report
    assert len(first) == 10 and report.cancelled
    assert report.total < 5000  # stopped early
    indices = [o.index for o in report.outcomes]
    assert len(indices) == len(set(indices))
    for outcome in report.outcomes:  # what the server took is reported as delivered
        kept = server.handler.kept[outcome.index]
        if outcome.status is DeliveryStatus.ACCEPTED:
            assert kept == 1
        elif outcome.status is DeliveryStatus.FAILED:
            assert kept == 0
            # Stopped before it was started: the typed marker says so, and no try is counted.
            assert outcome.never_started == (outcome.attempts == 0), outcome
    assert sum(server.handler.kept.values()) == sum(
        1 for o in report.outcomes if o.status is DeliveryStatus.ACCEPTED
    )
    assert all(n <= 1 for n in server.handler.kept.values())  # nothing twice
    assert engines() == [engine, engine]


def test_the_rate_limit_is_divided_between_the_processes(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    rate = TokenBucket(messages_per_second=40, burst=4)
    started = time.monotonic()
    with client.pool(max_connections=4) as pool:
        outcomes = list(pool.send_batch([item(i) for i in range(44)], processes=2, rate=rate))
    elapsed = time.monotonic() - started
    assert all(o.status is DeliveryStatus.ACCEPTED for o in outcomes)
    # 4 at once, then 40 more at 40/s in total: at least ~1 s, whatever the process count
    # (two undivided buckets would let it through in half that)
    assert elapsed >= 0.9


def test_divided_buckets_add_up_to_the_whole() -> None:
    now = [0.0]
    whole = TokenBucket(messages_per_second=10, burst=6, clock=lambda: now[0])
    shares = whole.divided(3)
    waits = [share.reserve() for share in shares for _ in range(2)]
    assert waits == [0.0] * 6  # the burst of 6 is spread: 2 each
    assert all(share.reserve() > 0 for share in shares)  # and then each waits its share
    with pytest.raises(ConfigurationError):
        whole.divided(0)


class _LocalLimiter:
    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        return 0.0

    def penalize(self, seconds: float) -> None:
        return None


class _SharedLimiter(_LocalLimiter):
    shared_across_processes = True


def test_a_limiter_that_is_not_shared_across_processes_is_refused(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    with client.pool(max_connections=2) as pool:
        with pytest.raises(ConfigurationError, match="between processes"):
            pool.send_batch([item(0)], processes=2, rate=_LocalLimiter())
        outcomes = list(pool.send_batch([item(1)], processes=2, rate=_SharedLimiter()))
    assert [o.status for o in outcomes] == [DeliveryStatus.ACCEPTED]


@pytest.mark.parametrize("processes", [0, -1, 2.5, True, "2"])
def test_processes_must_be_a_positive_int(
    faulty: Callable[..., FaultyServer], processes: object
) -> None:
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    with client.pool() as pool, pytest.raises(ConfigurationError, match="processes"):
        pool.send_batch([item(0)], processes=processes)  # type: ignore[arg-type]


def test_a_failing_progress_callback_loses_no_outcome_from_the_report(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty()
    client = plain_builder(server.host, server.port).build()

    def explode(progress: Progress) -> None:
        if progress.done >= 3:
            raise RuntimeError("callback failed")

    with client.pool(max_connections=2) as pool:
        run = pool.send_batch([item(i) for i in range(400)], processes=2, on_progress=explode)
        with pytest.raises(RuntimeError, match="callback failed"):
            list(run)
    report = run.report
    accepted = {o.index for o in report.outcomes if o.status is DeliveryStatus.ACCEPTED}
    assert accepted == {i for i, n in server.handler.kept.items() if n}  # none unaccounted
    assert len({o.index for o in report.outcomes}) == report.total


_CTRL_C_SCRIPT = r"""
import json, os, signal, sys
import mailsdk
from mailsdk import DeliveryStatus, Outgoing
port = int(sys.argv[1])
client = (mailsdk.ClientBuilder.smtp("127.0.0.1", port).with_tls("none")
          .with_timeouts(10.0).with_local_hostname("client.test").build())
items = [Outgoing(f"Subject: m{i}\r\n\r\nhello\r\n".encode(), sender="s@x.test",
                  recipients=(f"m{i}-0@x.test",)) for i in range(20000)]
with client.pool(max_connections=2) as pool:
    pids = []
    try:
        with pool.send_batch(items, processes=2) as run:
            for n, outcome in enumerate(run):
                if n == 50:
                    pids = [w.process.pid for w in run._workers]
                    os.killpg(os.getpgrp(), signal.SIGINT)  # what Ctrl-C in a terminal does
    except KeyboardInterrupt:
        pass
    report = run.report
alive = []
for pid in pids:
    try:
        os.kill(pid, 0)
        alive.append(pid)
    except ProcessLookupError:
        pass
print(json.dumps({
    "cancelled": report.cancelled,
    "outcomes": [[o.index, o.status.value] for o in report.outcomes],
    "alive": alive,
}))
"""


def test_ctrl_c_stops_the_workers_and_reports_every_message_read(
    faulty: Callable[..., FaultyServer], tmp_path: typing.Any
) -> None:
    import json
    import subprocess
    import sys

    server = faulty()
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C_SCRIPT, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script), str(server.port)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # its own process group, as a terminal's job would be
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["cancelled"] is True
    assert result["alive"] == []  # no worker outlives the batch
    outcomes = dict(result["outcomes"])
    assert len(outcomes) == len(result["outcomes"]) < 20000  # one each; it stopped early
    kept = {i for i, n in server.handler.kept.items() if n}
    accepted = {i for i, status in outcomes.items() if status == "accepted"}
    assert accepted == kept  # what the server took is reported delivered, and only that
    assert set(outcomes.values()) <= {"accepted", "failed"}  # nothing was cut mid-send


# -- adversarial review: each test failed before its fix -------------------------------------


def test_wrong_credentials_fail_every_message_typed_and_raise_the_auth_error(
    smtpd_factory: Callable[..., typing.Any],
) -> None:
    # The workers' own batches stop on the permanent AUTH failure: what they never sent must
    # be FAILED (not UNKNOWN), and the consumer hears the typed error, as in one process.
    from mailsdk.errors import AuthenticationFailed

    server = smtpd_factory(users={"me": "right"}, auth_require_tls=False)
    client = (
        plain_builder(server.host, server.port)
        .with_credentials("me", "wrong-secret-pw", allow_plaintext=True)
        .build()
    )
    with client.pool(max_connections=2) as pool:
        run = pool.send_batch([item(i) for i in range(300)], processes=2)
        with pytest.raises(AuthenticationFailed) as raised:
            list(run)
    report = run.report
    import pickle

    assert b"wrong-secret-pw" not in pickle.dumps(raised.value)  # what crossed the pipe
    assert not server.recorder.messages
    assert report.total == len({o.index for o in report.outcomes})
    assert report.outcomes and report.cancelled
    assert all(  # never sent, and said so: not "maybe sent"
        not o.status.delivered and o.status is not DeliveryStatus.UNKNOWN for o in report.outcomes
    )
    assert all("wrong-secret-pw" not in repr(o) for o in report.outcomes)


class _Exploding(typing.Sequence[Outgoing]):
    """A Sequence whose item 70 cannot be read (a lazy database view, say)."""

    def __len__(self) -> int:
        return 200

    @typing.overload
    def __getitem__(self, index: int) -> Outgoing: ...
    @typing.overload
    def __getitem__(self, index: slice) -> typing.Sequence[Outgoing]: ...
    def __getitem__(self, index: int | slice) -> Outgoing | typing.Sequence[Outgoing]:
        if isinstance(index, slice):
            raise TypeError("no slices")
        if index == 70:
            raise LookupError("row 70 is corrupt")
        return item(index)


def test_a_sequence_item_that_cannot_be_read_raises_to_the_consumer(
    faulty: Callable[..., FaultyServer],
) -> None:
    # One process re-raises an input error after the batch; the workers read a Sequence
    # themselves, so the error must come back, and nothing that was never read is UNKNOWN.
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    with client.pool(max_connections=2) as pool:
        run = pool.send_batch(_Exploding(), processes=2)
        with pytest.raises(LookupError, match="row 70"):
            list(run)
    report = run.report
    assert len({o.index for o in report.outcomes}) == report.total
    assert 70 not in {o.index for o in report.outcomes if o.status is DeliveryStatus.ACCEPTED}
    for outcome in report.outcomes:
        assert outcome.status is not DeliveryStatus.UNKNOWN, outcome
        assert server.handler.kept[outcome.index] == (
            1 if outcome.status is DeliveryStatus.ACCEPTED else 0
        )


def test_close_from_inside_on_progress_stops_the_batch(
    faulty: Callable[..., FaultyServer],
) -> None:
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    runs: list[ProcessBatchRun] = []

    def stop_at_five(progress: Progress) -> None:
        if progress.done == 5:
            runs[0].close()

    with client.pool(max_connections=2) as pool:
        run = pool.send_batch([item(i) for i in range(3000)], processes=2, on_progress=stop_at_five)
        assert isinstance(run, ProcessBatchRun)
        runs.append(run)
        got = list(run)
    report = run.report
    assert report.cancelled and report.total < 3000
    assert len(got) <= report.total
    assert len({o.index for o in report.outcomes}) == report.total
    assert sum(server.handler.kept.values()) == report.counts[DeliveryStatus.ACCEPTED]


def test_a_bucket_passed_to_several_runs_keeps_its_limit(
    faulty: Callable[..., FaultyServer],
) -> None:
    # A TokenBucket shared by consecutive batches holds one limit. The workers spend shares of
    # it, so after the run it must be as spent as they left it: a next run (or pool) starting
    # with a full burst again would let burst x runs through in one window.
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    rate = TokenBucket(messages_per_second=1, burst=10)
    with client.pool(max_connections=2) as pool:
        outcomes = list(pool.send_batch([item(i) for i in range(10)], processes=2, rate=rate))
    assert [o.status for o in outcomes] == [DeliveryStatus.ACCEPTED] * 10  # the burst
    assert rate.reserve() > 0.5  # the burst is spent: the next send waits for the refill


def test_an_in_process_connection_cap_is_divided_not_copied_into_each_worker(
    faulty: Callable[..., FaultyServer],
) -> None:
    # A LocalConnectionLimiter forked into every worker would cap each process, not all of them.
    from mailsdk.batch import LocalConnectionLimiter

    server = faulty(slow_for=0.01, faults=dict.fromkeys(range(400), "slow"))
    client = plain_builder(server.host, server.port).build()
    cap = LocalConnectionLimiter(2)
    with client.pool(max_connections=4, connection_limiter=cap) as pool:
        outcomes = list(pool.send_batch([item(i) for i in range(400)], processes=2))
    assert all(o.status is DeliveryStatus.ACCEPTED for o in outcomes) and len(outcomes) == 400
    assert server.handler.max_open <= 2


_ORPHAN_SCRIPT = r"""
import os, signal, sys
import mailsdk
from mailsdk import Outgoing
port = int(sys.argv[1])
client = (mailsdk.ClientBuilder.smtp("127.0.0.1", port).with_tls("none")
          .with_timeouts(10.0).with_local_hostname("client.test").build())
items = [Outgoing(f"Subject: m{i}\r\n\r\nhello\r\n".encode(), sender="s@x.test",
                  recipients=(f"m{i}-0@x.test",)) for i in range(20000)]
with client.pool(max_connections=2) as pool:
    run = pool.send_batch(items, processes=2)
    for n, outcome in enumerate(run):
        if n == 30:
            print(" ".join(str(w.process.pid) for w in run._workers), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # the parent dies without a word
"""


def test_workers_stop_when_their_parent_dies(
    faulty: Callable[..., FaultyServer], tmp_path: typing.Any
) -> None:
    import subprocess
    import sys

    server = faulty(dict.fromkeys(range(20000), "slow"), slow_for=0.01)
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script), str(server.port)],
        check=False, capture_output=True, text=True, timeout=120, start_new_session=True,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _running(pid)]
    for pid in alive:  # do not leave them behind, whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert alive == [], "an orphaned worker kept sending"
    assert sum(server.handler.kept.values()) < 2000


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # a zombie has stopped
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("engine", ENGINES)
def test_server_throttling_pauses_every_worker_not_only_the_one_that_saw_it(
    faulty: Callable[..., FaultyServer], engines: Callable[[], list[str]], engine: str
) -> None:
    # One process pauses its whole pool on a 421 4.7.0; over processes, the worker that got it
    # must not be the only one: the server asked the sender, not one connection, to slow down.
    server = faulty({60: "data421"})
    handler = server.handler
    kept_at: dict[int, float] = {}
    throttled_at: list[float] = []
    keep, begin = handler._keep, handler._begin

    def timed_keep(index: int, envelope: typing.Any) -> None:
        kept_at[index] = time.monotonic()
        keep(index, envelope)

    def timed_begin(envelope: typing.Any, index: int) -> str | None:
        fault = begin(envelope, index)
        if fault == "data421":
            throttled_at.append(time.monotonic())
        return fault

    handler._keep, handler._begin = timed_keep, timed_begin  # type: ignore[method-assign]
    client = builder_for(engine, server.host, server.port).build()
    retry = RetryPolicy(attempts=3, backoff=0.01, jitter=0.0, throttle_delay=2.0)
    with client.pool(max_connections=2) as pool:
        outcomes = list(pool.send_batch([item(i) for i in range(3000)], processes=2, retry=retry))
    one_each(outcomes, 3000)
    assert all(o.status is DeliveryStatus.ACCEPTED for o in outcomes)
    assert throttled_at and max(kept_at.values()) > throttled_at[0] + 2.0  # work was left
    # after a moment for the news to travel (and what was already on the wire), nothing
    # starts anywhere until the pause is over
    start, end = throttled_at[0] + 0.4, throttled_at[0] + 1.6
    during = sorted(i for i, at in kept_at.items() if start < at < end)
    assert during == [], during
    assert engines() == [engine, engine]


def test_an_outcome_reaches_the_parent_although_its_worker_yields_nothing_after_it(
    faulty: Callable[..., FaultyServer],
) -> None:
    # Item 1 waits seconds for its retry; item 0's outcome must not wait with it (outcomes
    # were only flushed when a next one came: a slow rate or a retry held them all back).
    server = faulty({1: "rcpt4xx"})
    client = plain_builder(server.host, server.port).build()
    retry = RetryPolicy(attempts=3, backoff=3.0, jitter=0.0)
    with client.pool(max_connections=1) as pool:
        with pool.send_batch([item(0), item(1)], processes=2, retry=retry) as run:
            first = next(run)
            retried_yet = server.handler.tries[1] > 1
            rest = list(run)
    assert first.index == 0 and first.status is DeliveryStatus.ACCEPTED
    assert not retried_yet  # it came at once, not with item 1's retry seconds later
    assert [o.index for o in rest] == [1] and rest[0].status is DeliveryStatus.ACCEPTED


def test_a_ctrl_c_right_after_outcomes_arrive_loses_none_of_them(
    faulty: Callable[..., FaultyServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT is raised at the first check after a C call returns: here, just after a
    worker's outcomes were read from its pipe and before the report had them. They used to be
    gone (already released from the worker's outstanding items), so the command line would
    call messages the server has "not sent". Now an outcome is released only once recorded."""
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    original = ProcessBatchRun._handle
    fired: list[bool] = []

    def interrupted(self: ProcessBatchRun, worker: typing.Any) -> typing.Any:
        found = original(self, worker)
        if found and not fired and all(o.status is DeliveryStatus.ACCEPTED for o, _ in found):
            fired.append(True)
            raise KeyboardInterrupt  # what the signal handler does at this point
        return found

    monkeypatch.setattr(ProcessBatchRun, "_handle", interrupted)
    with client.pool(max_connections=2) as pool:
        run = pool.send_batch([item(i) for i in range(400)], processes=2)
        with pytest.raises(KeyboardInterrupt):
            list(run)
    assert fired
    report = run.report
    seen = {o.index: o.status for o in report.outcomes}
    assert len(seen) == len(report.outcomes)  # one outcome each
    held = {i for i, n in server.handler.kept.items() if n}
    missing = {
        i for i in held if seen.get(i) not in (DeliveryStatus.ACCEPTED, DeliveryStatus.UNKNOWN)
    }
    assert not missing, f"on the server but reported otherwise: {sorted(missing)[:5]}"


@pytest.mark.parametrize("engine", ENGINES)
def test_closing_abandons_the_retries_the_workers_queued_instead_of_waiting_for_them(
    faulty: Callable[..., FaultyServer], engines: Callable[[], list[str]], engine: str
) -> None:
    # Item 3 is refused for now (4xx) on its first try, and its retry is due long after the
    # stop: the stop must end it FAILED, not sent again (as an in-process batch does), rather
    # than let its worker wait for it until the parent kills it and calls it UNKNOWN.
    server = faulty({3: "rcpt4xx"})
    client = builder_for(engine, server.host, server.port).build()
    later = RetryPolicy(attempts=3, backoff=600.0, max_delay=600.0, jitter=0.0, max_elapsed=None)
    with client.pool(max_connections=2) as pool:
        with pool.send_batch([item(i) for i in range(5000)], processes=2, retry=later) as run:
            for got, _ in enumerate(run, 1):
                if got >= 10 and server.handler.tries[3] == 1:
                    break
        report = run.report
    assert report.cancelled
    seen = {o.index: o for o in report.outcomes}
    assert len(seen) == len(report.outcomes)  # one outcome each
    assert server.handler.tries[3] == 1  # never retried after the stop
    assert seen[3].status is DeliveryStatus.FAILED, seen[3]
    assert not isinstance(seen[3].error, DeliveryUnknown)
    assert seen[3].attempts == 1
    assert engines() == [engine, engine]


def test_a_ctrl_c_while_the_input_is_read_gives_every_item_it_yielded_an_outcome(
    faulty: Callable[..., FaultyServer],
) -> None:
    # The parent reads a lazy input a chunk at a time, so a Ctrl-C most likely lands inside the
    # input's own code (a slow generator): the items of the chunk read so far were taken from
    # the caller's input and must not vanish from the report (FAILED, not sent).
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    yielded: list[int] = []

    def lazy() -> Iterator[Outgoing]:
        for i in range(1000):
            if i == 100:
                raise KeyboardInterrupt  # as a Ctrl-C landing in the generator
            yielded.append(i)
            yield item(i)

    with client.pool(max_connections=2) as pool:
        run = pool.send_batch(lazy(), processes=2)
        with pytest.raises(KeyboardInterrupt):
            list(run)
    report = run.report
    seen = {o.index: o for o in report.outcomes}
    assert len(seen) == len(report.outcomes)  # one outcome each
    assert sorted(seen) == yielded  # every item taken from the input, none more
    for index, outcome in seen.items():
        if outcome.status is not DeliveryStatus.ACCEPTED:
            assert outcome.status is DeliveryStatus.FAILED and outcome.never_started, outcome
            assert server.handler.kept[index] == 0


def _rebuilt_only_in(pid: int, body: bytes) -> bytes:
    if os.getpid() != pid:
        raise ValueError("cannot be rebuilt in this process")
    return body


class _UnloadableBody(bytes):
    """A message body that pickles, but does not unpickle in a worker process (the parent's
    round trip too unless ``everywhere_else`` names the parent)."""

    everywhere_else = 0

    def __reduce__(self) -> tuple[typing.Any, ...]:
        return (_rebuilt_only_in, (self.everywhere_else, bytes(self)))


@pytest.mark.parametrize("only_in_the_workers", [False, True])
def test_an_item_that_does_not_unpickle_in_a_worker_fails_typed_and_nothing_hangs(
    faulty: Callable[..., FaultyServer], only_in_the_workers: bool
) -> None:
    # Before, the worker's feed thread died on it and the worker waited for its chunk (and the
    # parent for the worker) for ever.
    server = faulty()
    client = plain_builder(server.host, server.port).build()
    bad = _UnloadableBody(b"Subject: x\r\n\r\nx\r\n")
    bad.everywhere_else = os.getpid() if only_in_the_workers else 0

    def lazy() -> Iterator[Outgoing]:
        for i in range(200):
            yield Outgoing(bad, sender="s@x.test", recipients=recipients_for(i)) if i == 70 \
                else item(i)  # fmt: skip

    with client.pool(max_connections=2) as pool:
        seen = one_each(list(pool.send_batch(lazy(), processes=2)), 200)
    failed = {i for i, o in seen.items() if o.status is DeliveryStatus.FAILED}
    # Alone when the parent can tell which item it is; else its whole chunk, never sent.
    assert failed == (set(range(64, 128)) if only_in_the_workers else {70})
    for index in failed:
        assert isinstance(seen[index].error, InvalidInputError)
        assert "worker process" in str(seen[index].error)
        assert server.handler.kept[index] == 0
    assert all(o.status is DeliveryStatus.ACCEPTED for i, o in seen.items() if i not in failed)
    assert all(server.handler.kept[i] == 1 for i in seen if i not in failed)
