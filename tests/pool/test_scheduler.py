"""The batch scheduler (pool/_work.py): lazy reading, retries, merged outcomes, never a
recipient sent twice."""

from __future__ import annotations

from collections.abc import Iterator

from mailsdk import errors
from mailsdk.batch import RetryPolicy
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome, SendResult
from mailsdk.pool._work import Scheduler
from mailsdk.protocol.reply import Reply

POLICY = RetryPolicy(attempts=5, backoff=1.0, jitter=0.0)
OK = Reply.build(250, "2.0.0 queued as Q")
FULL = Reply.build(452, "4.2.2 mailbox full")


def partial(accepted: tuple[str, ...], refused: dict[str, Reply]) -> SendOutcome:
    result = SendResult(sender="s@x.test", accepted=accepted, refused=refused, reply=OK, size=5)
    return SendOutcome(index=0, status=DeliveryStatus.PARTIAL, result=result)


def test_reads_lazily_and_counts() -> None:
    pulled: list[int] = []

    def items() -> Iterator[bytes]:
        for i in range(3):
            pulled.append(i)
            yield b"Subject: x\r\n\r\ny\r\n"

    sched = Scheduler(items(), POLICY)
    assert pulled == []
    first = sched.take(0.0)
    assert first is not None and first.index == 0 and pulled == [0]
    assert isinstance(first.item, Outgoing) and first.replayable
    assert sched.read == 1 and sched.outstanding == 1 and not sched.finished


def test_a_failed_retry_of_some_recipients_never_resends_the_accepted_ones() -> None:
    item = Outgoing(b"Subject: x\r\n\r\ny\r\n", sender="s@x.test", recipients=("a@x", "b@x"))
    sched = Scheduler([item], POLICY)
    work = sched.take(0.0)
    assert work is not None
    final, _ = sched.record(work, partial(("b@x",), {"a@x": FULL}), 0.0)
    assert final is None and work.send.recipients == ("a@x",)
    assert sched.take(0.5) is None and sched.next_ready() == 1.0
    again = sched.take(1.0)
    assert again is work
    lost = SendOutcome(index=0, status=DeliveryStatus.FAILED, error=errors.ConnectionLost("x"))
    final, _ = sched.record(work, lost, 1.0)
    assert final is None
    assert work.send.recipients == ("a@x",)  # not ("a@x", "b@x"): b@x already has it
    accepted = SendResult(sender="s@x.test", accepted=("a@x",), reply=OK, size=5)
    done = SendOutcome(index=0, status=DeliveryStatus.ACCEPTED, result=accepted)
    final, _ = sched.record(work, done, 3.0)
    assert final is not None and final.status is DeliveryStatus.ACCEPTED
    assert final.result is not None and sorted(final.result.accepted) == ["a@x", "b@x"]
    assert final.attempts == 3 and sched.finished


def test_partial_then_exhausted_stays_partial() -> None:
    item = Outgoing(b"x", sender="s@x.test", recipients=("a@x", "b@x"))
    sched = Scheduler([item], RetryPolicy(attempts=2, backoff=0.0, jitter=0.0))
    work = sched.take(0.0)
    assert work is not None
    sched.record(work, partial(("b@x",), {"a@x": FULL}), 0.0)
    work = sched.take(0.0)
    assert work is not None
    lost = SendOutcome(index=0, status=DeliveryStatus.FAILED, error=errors.ConnectionLost("x"))
    final, _ = sched.record(work, lost, 0.0)
    assert final is not None and final.status is DeliveryStatus.PARTIAL
    assert final.result is not None and final.result.accepted == ("b@x",)
    assert "a@x" in final.result.refused


def test_stop_abandons_waiting_retries_as_failed() -> None:
    item = Outgoing(b"x", sender="s@x.test", recipients=("a@x",))
    sched = Scheduler([item, item], POLICY)
    work = sched.take(0.0)
    assert work is not None
    lost = SendOutcome(index=0, status=DeliveryStatus.FAILED, error=errors.ConnectionLost("x"))
    assert sched.record(work, lost, 0.0)[0] is None
    (abandoned,) = sched.stop("cancelled")
    # The abandoned retry was never sent: only the one real try counts; and since that try
    # reached the server, the message is not marked never started.
    assert abandoned.status is DeliveryStatus.FAILED and abandoned.attempts == 1
    assert not abandoned.never_started
    assert sched.take(10.0) is None and sched.finished  # the second item is never read
    assert sched.read == 1


def test_abandoning_unsent_work_marks_it_never_started_with_no_attempt() -> None:
    sched = Scheduler([Outgoing(b"x", sender="s@x.test", recipients=("a@x",))], POLICY)
    work = sched.take(0.0)
    assert work is not None
    outcome = sched.abandon(work, handed_over=False, reason="stopped")
    assert outcome.status is DeliveryStatus.FAILED and outcome.never_started
    assert outcome.attempts == 0 and sched.outstanding == 0
    handed = Scheduler([Outgoing(b"x", sender="s@x.test", recipients=("a@x",))], POLICY)
    work = handed.take(0.0)
    assert work is not None
    unknown = handed.abandon(work, handed_over=True, reason="stopped")
    assert unknown.status is DeliveryStatus.UNKNOWN and not unknown.never_started
    assert unknown.attempts == 1


def test_a_never_started_outcome_uses_the_budget_but_is_no_attempt() -> None:
    sched = Scheduler([Outgoing(b"x", sender="s@x.test", recipients=("a@x",))], POLICY)
    work = sched.take(0.0)
    assert work is not None
    never = SendOutcome(
        index=0,
        status=DeliveryStatus.FAILED,
        error=errors.ConnectionLost("closing"),
        attempts=0,
        never_started=True,
    )
    final = None
    for _ in range(POLICY.attempts):
        final, _decision = sched.record(work, never, 0.0)
        if final is None:
            again = sched.take(1e9)
            assert again is work
    assert final is not None and final.never_started and final.attempts == 0
