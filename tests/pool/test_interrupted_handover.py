"""A Ctrl-C that lands just as the consumer takes an outcome from the batch's workers.

CPython runs a signal's Python handler at the first check after a C call returns: a SIGINT
that arrives while the consumer waits for the next outcome can be raised right after the call
that handed the outcome over returned, before anything recorded it. The batch report must still
hold that message (the server has it): reported missing, the command line would call it
not sent, and a re-run would send it twice.

The interrupt is injected deterministically with a profile hook on the consumer's thread that
raises ``KeyboardInterrupt`` when that call returns (what the signal handler does), against a
real aiosmtpd server, in both modes.
"""

from __future__ import annotations

import queue
import sys
import types
import typing

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.smtpd import SmtpdServer

from mailsdk import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.batch import BatchReport, Progress, RetryPolicy


def _message(index: int) -> Outgoing:
    body = f"Subject: m{index}\r\nX-Idx: {index}\r\n\r\nhello {index}\r\n".encode()
    return Outgoing(body, sender="s@x.test", recipients=[f"r{index}@y.test"], key=f"k{index}")


def _hands_an_outcome_over(frame: types.FrameType, func: object) -> bool:
    """The C call through which the runner's consumer receives a final outcome: the blocking
    runner's ``SimpleQueue.get``, the async runner's outbox ``deque.popleft``."""
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if isinstance(owner, queue.SimpleQueue) and name == "get":
        return True
    return (
        name == "popleft"
        and frame.f_code.co_name == "get"
        and type(frame.f_locals.get("self")).__name__ == "_Outbox"
    )


class _InterruptOnHandover:
    """Raises ``KeyboardInterrupt`` in this thread as the first outcome is handed over."""

    def __init__(self) -> None:
        self.fired = False

    def __enter__(self) -> _InterruptOnHandover:
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)

    def _hook(self, frame: types.FrameType, event: str, arg: object) -> None:
        if event == "c_return" and not self.fired and _hands_an_outcome_over(frame, arg):
            self.fired = True
            sys.setprofile(None)
            raise KeyboardInterrupt


def _consume(run: typing.Iterable[SendOutcome], into: list[SendOutcome]) -> None:
    for outcome in run:
        into.append(outcome)


async def _consume_async(run: typing.AsyncIterable[SendOutcome], into: list[SendOutcome]) -> None:
    async for outcome in run:
        into.append(outcome)


def _server_indexes(server: SmtpdServer) -> set[int]:
    return {int(m.content.split(b"X-Idx: ")[1].split(b"\r\n")[0]) for m in server.recorder.messages}


@pytest.mark.parametrize("watched", [False, True], ids=["no-progress", "on-progress"])
async def test_interrupt_as_an_outcome_is_handed_over_keeps_it_in_the_report(
    mode: Mode, smtpd: SmtpdServer, watched: bool
) -> None:
    # Enough items that the workers cannot finish them all before the interrupt stops the
    # batch (with six, a fast worker thread sometimes did, and the report was not cancelled).
    items = [_message(i) for i in range(200)]
    events: list[Progress] = []
    options: dict[str, typing.Any] = {
        "retry": RetryPolicy.never(),
        "on_progress": events.append if watched else None,
    }
    client = mode.build(plain_builder(smtpd.host, smtpd.port))
    yielded: list[SendOutcome] = []
    report: BatchReport
    interrupt = _InterruptOnHandover()
    if mode.is_async:
        async with client.pool(max_connections=1) as apool:  # type: ignore[union-attr]
            arun = apool.send_batch(items, **options)
            with pytest.raises(KeyboardInterrupt), interrupt:
                await _consume_async(arun, yielded)
            await arun.aclose()
            report = arun.report
    else:
        with client.pool(max_connections=1) as spool:  # type: ignore[union-attr]
            run = spool.send_batch(items, **options)
            with pytest.raises(KeyboardInterrupt), interrupt:
                _consume(run, yielded)
            run.close()
            report = run.report
    assert interrupt.fired, "the runner no longer hands outcomes over this way: update the hook"
    assert yielded == []  # the interrupt came with the first outcome
    by_index = {o.index: o for o in report.outcomes}
    assert len(by_index) == len(report.outcomes), "an item got more than one outcome"
    assert report.cancelled
    received = _server_indexes(smtpd)
    assert received, "the first message reached the server before its outcome came back"
    for index in received:  # a message the server has is never reported missing or not sent
        assert index in by_index, f"message {index} is on the server but not in the report"
        assert by_index[index].status in (DeliveryStatus.ACCEPTED, DeliveryStatus.UNKNOWN)
    for outcome in report.outcomes:
        if outcome.status is DeliveryStatus.ACCEPTED:
            assert outcome.index in received
        else:
            assert outcome.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN), outcome
    assert sorted(by_index) == list(range(len(by_index)))  # every item read has its outcome
