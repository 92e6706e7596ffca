"""The asyncio batch runner: :class:`AsyncBatchRun`, what ``AsyncPool.send_batch`` returns.

Layer: L5c (pool). The blocking runner's design (see ``_sync_batch``) with one worker task per
pool connection. On cancellation of the consuming task (or :meth:`AsyncBatchRun.aclose`) the
workers get ``cancel_grace`` seconds to finish what they already sent; whatever is still in
their hands then ends UNKNOWN (handed to a session) or FAILED (never sent), queued retries end
FAILED, and the cancellation propagates.

With a blocking limiter (the usual :class:`~mailsdk.batch.TokenBucket`) each connection is fed
from a plain generator that never waits, so ``send_many`` pulls the next message without
writing first and the next envelope shares the write of this message's end of data; an
asyncio limiter, whose ``reserve()`` is awaited, gets an async generator instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import time
import types
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sized

from mailsdk.batch.bucket import TokenBucket
from mailsdk.batch.limits import AsyncRateLimiter, RateLimiter
from mailsdk.batch.report import BatchReport, BatchTracker, Progress
from mailsdk.batch.retry import RetryDecision, RetryPolicy
from mailsdk.client import AsyncSession
from mailsdk.errors import ConnectionLost, MailError
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.pool._book import Slot
from mailsdk.pool._sync_batch import MAX_CONNECT_FAILURES, _Hand  # pyright: ignore[reportPrivateUsage]
from mailsdk.pool._telemetry import batch_context, end_batch_span
from mailsdk.pool._work import (
    Scheduler,
    Work,
    checked_wait,
    halts,
    never_sent,
    out_of_step,
    outcome_of_error,
    paced_now,
    recipient_count,
)

if typing.TYPE_CHECKING:
    from mailsdk.pool.async_pool import AsyncPool

__all__ = ["AsyncBatchRun"]

T = typing.TypeVar("T")
_INLINE_WAIT: typing.Final = 0.002
_REFUSED: typing.Final = DeliveryStatus.REFUSED
_ACCEPTED: typing.Final = DeliveryStatus.ACCEPTED
_POLL: typing.Final = 0.25  # workers re-check the stop flag at least this often


class _Outbox(typing.Generic[T]):
    """The outcomes on their way to the consuming task: an unbounded FIFO with one getter
    (``asyncio.Queue`` without its bookkeeping, which costs a dozen calls per outcome)."""

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def get_nowait(self) -> T:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items


class AsyncBatchRun:
    """A running batch: ``async for outcome in run`` gives one outcome per input item.

    Use ``async with`` (or call :meth:`aclose`) when you may stop early. :attr:`report` is the
    :class:`~mailsdk.batch.BatchReport` of everything that finished, also after cancellation.
    """

    #: Seconds the workers get to finish in-flight messages when the batch is stopped.
    cancel_grace: float = 2.0

    def __init__(
        self,
        pool: AsyncPool,
        items: Iterable[object],
        *,
        rate: RateLimiter | AsyncRateLimiter | None,
        retry: RetryPolicy | None,
        on_progress: Callable[[Progress], None] | None,
        ordered: bool,
    ) -> None:
        self._pool = pool
        self._rate: RateLimiter | AsyncRateLimiter = rate if rate is not None else TokenBucket()
        #: the limiter when its reserve() is a plain call (the usual TokenBucket), else None.
        self._blocking_rate: RateLimiter | None = (
            None if inspect.iscoroutinefunction(self._rate.reserve) else self._rate  # type: ignore[assignment]
        )
        self._limit = pool.adaptive  # the pool's adaptive connection limit (read per message)
        self._sched = Scheduler(items, retry if retry is not None else RetryPolicy())
        self._tracker = BatchTracker(
            len(items) if isinstance(items, Sized) else None,
            connections=lambda: pool.concurrency,
        )
        self._on_progress = on_progress
        self._ordered = ordered
        self._cond = asyncio.Condition()
        #: final outcomes on their way to the consumer, each with its progress snapshot
        self._out: _Outbox[tuple[SendOutcome, Progress | None] | None] = _Outbox()
        self._stop = asyncio.Event()
        self._final: set[int] = set()
        self._hands: dict[int, _Hand] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._crash: BaseException | None = None
        self._connect_failures = 0
        self._active = 0  # workers admitted to hold a connection (at most pool.concurrency)
        self._waiting = 0  # workers waiting on self._cond (notified only when there are some)
        self._gen: AsyncGenerator[SendOutcome, None] = self._run()

    @property
    def report(self) -> BatchReport:
        """The report of what has finished so far (complete once the iteration ended)."""
        return self._tracker.report()

    def __aiter__(self) -> AsyncIterator[SendOutcome]:
        return self._gen  # iterated directly: no extra call per outcome

    async def __anext__(self) -> SendOutcome:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop the batch (see the module docstring); idempotent."""
        await self._gen.aclose()

    async def __aenter__(self) -> AsyncBatchRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _emit(self, outcome: SendOutcome, started: float | None) -> None:
        """Give an item its final outcome: into the report at once, then to the consumer
        (an interrupt that lands on the consumer as it takes an outcome cannot drop it from
        the report; see the blocking runner)."""
        if outcome.index in self._final:
            return
        self._final.add(outcome.index)
        latency = time.monotonic() - started if started is not None else 0.0
        if self._on_progress is not None:
            self._out.put_nowait((outcome, self._tracker.finished(outcome, latency)))
        else:
            self._tracker.add(outcome, latency)
            self._out.put_nowait((outcome, None))
        if self._sched.finished:
            self._out.put_nowait(None)

    async def _record(self, work: Work, outcome: SendOutcome) -> None:
        """Record one try's outcome (see the blocking runner)."""
        decision = self._book(work, outcome)
        if decision is not None:
            await self._follow_up(work, outcome, decision)

    def _book(self, work: Work, outcome: SendOutcome) -> RetryDecision | None:
        """:meth:`_record` without waiting: ``None`` (the usual case, no await per message)
        unless :meth:`_follow_up` has something to do."""
        if work.index in self._final:  # abandoned at the shutdown already: keep that one
            return None
        final, decision = self._sched.record(work, outcome, time.monotonic())
        if final is not None:
            self._emit(final, work.started)
        limit = self._limit
        regrow = outcome.status is _ACCEPTED and limit.limit < limit.ceiling
        follow = self._waiting or decision.throttle > 0 or decision.throttled or regrow
        return decision if follow else None

    async def _follow_up(self, work: Work, outcome: SendOutcome, decision: RetryDecision) -> None:
        if self._waiting:  # a retry to take, a worker to admit, or the end to notice
            async with self._cond:
                self._cond.notify_all()
        if decision.throttle > 0:
            result = self._rate.penalize(decision.throttle)
            if result is not None:
                await result
        if decision.throttled:
            await self._pool.throttled(work.epoch)
        elif outcome.status is DeliveryStatus.ACCEPTED and self._limit.limit < self._limit.ceiling:
            await self._pool.relieved(work.epoch)

    async def _requeue(self, work: Work) -> None:
        if self._stop.is_set():
            self._emit(self._sched.abandon(work, handed_over=False, reason="stopped"), None)
        else:
            self._sched.requeue(work, time.monotonic())
        async with self._cond:
            self._cond.notify_all()

    # -- admission: how many workers hold a connection (the pool's concurrency) ----------------

    async def _admit(self) -> bool:
        """Wait until one more worker may hold a connection; ``False`` once the batch is over."""
        async with self._cond:
            while not self._stop.is_set() and not self._sched.finished:
                if self._active < self._pool.concurrency:
                    self._active += 1
                    return True
                self._waiting += 1
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), _POLL)
                finally:
                    self._waiting -= 1
            return False

    async def _leave(self) -> None:
        async with self._cond:
            self._active -= 1
            self._cond.notify_all()

    async def _over(self) -> bool:
        """True (and this worker stops holding a connection) when more workers hold one than
        the pool allows now: the server throttled."""
        if self._active <= self._pool.concurrency:
            return False
        async with self._cond:
            if self._active <= self._pool.concurrency:
                return False
            self._active -= 1
            self._cond.notify_all()
            return True

    # -- the worker ----------------------------------------------------------------------------

    def _due(self) -> Work | None:
        """Work that is due now (a retry whose time has come, else the next input item)."""
        work = self._sched.take(time.monotonic())
        if work is not None:
            self._tracker.read = self._sched.read
        elif self._sched.finished:
            self._out.put_nowait(None)
        return work

    async def _take(self) -> Work | None:
        """Due work, waiting for some (``None`` once the batch has no more)."""
        while not self._stop.is_set():
            work = self._due()
            if work is not None:
                return work
            if self._sched.finished:
                return None
            ready = self._sched.next_ready()
            now = time.monotonic()
            timeout = _POLL if ready is None else min(_POLL, max(0.0, ready - now))
            async with self._cond:
                self._waiting += 1
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), timeout)
                finally:
                    self._waiting -= 1
        return None

    async def _pace(self, work: Work, hold: float) -> bool:
        """Take the rate limit's tokens for ``work`` (see the blocking runner's ``_pace``)."""
        result = self._rate.reserve(messages=1, recipients=recipient_count(work.send))
        if inspect.isawaitable(result):
            result = await result
        wait = checked_wait(result)
        if wait <= hold:
            if wait > 0:
                await asyncio.sleep(wait)
            return True
        work.paced = True
        work.ready = time.monotonic() + wait
        return False

    async def _connect_failed(self, error: MailError) -> None:
        """Abort the batch when connecting cannot succeed (see the blocking runner)."""
        self._connect_failures += 1
        if not error.is_retryable or self._connect_failures >= MAX_CONNECT_FAILURES:
            if self._crash is None:
                self._crash = error
            self._stop.set()
            async with self._cond:
                self._cond.notify_all()
        self._out.put_nowait(None)

    async def _worker_main(self) -> None:
        try:
            await self._worker()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._crash = exc
            self._out.put_nowait(None)

    async def _worker(self) -> None:
        hand = _Hand()
        self._hands[id(hand)] = hand
        while await self._admit():
            over = False
            try:
                over = await self._serve(hand)
            finally:
                if not over:
                    await self._leave()
            if not over:
                return

    async def _serve(self, hand: _Hand) -> bool:
        """Take work and send it, one connection at a time (see the blocking runner)."""
        carry: Work | None = None
        while not self._stop.is_set():
            work = carry or await self._take()
            carry = None
            if work is None:
                return False
            hand.holding = [work]
            delay = work.ready - time.monotonic()
            if delay > 0:  # a retry's back-off, or the wait for the tokens it already has
                await asyncio.sleep(delay)
            if self._stop.is_set():
                return False  # still held: the shutdown reports it FAILED (never sent)
            try:
                slot = await self._pool.checkout()
            except MailError as exc:
                hand.holding = []
                await self._record(work, outcome_of_error(0, exc))
                await self._connect_failed(exc)
                continue
            self._connect_failures = 0
            carry, over = await self._use(slot, work, hand)
            if over:
                if carry is not None:  # another worker sends it
                    hand.holding = []
                    await self._requeue(carry)
                return True
        return False

    async def _use(
        self, slot: Slot[AsyncSession], work: Work, hand: _Hand
    ) -> tuple[Work | None, bool]:
        """Send runs on a checked-out connection, then check it in (see the blocking runner's
        ``_use``: the rate limit's tokens are taken once the connection is ready)."""
        session = slot.session
        assert session is not None
        allowance = self._pool.allowance(slot)
        hold = max(_INLINE_WAIT, self._pool.limits.health_check_after)
        sent = 0
        over = False
        next_work: Work | None = work
        try:
            while next_work is not None and not self._stop.is_set():
                work, next_work = next_work, None
                if not work.paced and not await self._pace(work, hold):
                    next_work = work  # a long wait: the connection goes back to the pool meanwhile
                    break
                carried: list[Work] = []
                left = None if allowance is None else allowance - sent
                sent += await self._send(session, work, left, hand, carried)
                next_work = carried[0] if carried else None
                hand.handed = []
                hand.holding = [next_work] if next_work is not None else []
                over = await self._over()
                if over or session.closed or (allowance is not None and sent >= allowance):
                    break
                if next_work is not None:  # its tokens are taken: wait for them on this connection
                    delay = next_work.ready - time.monotonic()
                    if delay > hold:
                        break
                    if delay > 0:
                        await asyncio.sleep(delay)
        except BaseException:  # cancelled mid-send: never hand this session out again
            await asyncio.shield(session.aclose())
            raise
        finally:
            await self._pool.checkin(slot, sent=sent)
        return next_work, over

    async def _send(
        self,
        session: AsyncSession,
        first: Work,
        allowance: int | None,
        hand: _Hand,
        carried: list[Work],
    ) -> int:
        """One ``send_many`` run (see the blocking runner's ``_send``)."""
        handed: list[Work] = []
        hand.handed = handed
        halt = [False]

        limit = self._limit
        limiter = self._blocking_rate

        def feed() -> Iterator[Outgoing]:
            # A plain generator that never blocks (the limiter is a blocking one that never
            # waits): send_many pulls from it without writing first, so the next envelope
            # shares the write of this message's end of data.
            work: Work | None = first
            while work is not None:
                if work.started is None:
                    work.started = time.monotonic()
                work.paced = False  # its tokens are spent by this send
                work.epoch = limit.epoch
                handed.append(work)
                hand.holding = []
                yield work.send
                if halt[0] or session.closed or self._stop.is_set():
                    return  # never feed a broken session: it would report the rest unsent
                if allowance is not None and len(handed) >= allowance:
                    return
                if self._active > limit.limit:
                    return  # the server throttled: this connection may have to close
                work = self._due()
                if work is not None:
                    hand.holding = [work]
                    assert limiter is not None
                    if not paced_now(work, limiter, time.monotonic):
                        carried.append(work)  # a rate wait: end this run, send it next
                        return

        async def afeed() -> AsyncIterator[Outgoing]:
            # The same for an asyncio limiter, whose reserve() must be awaited.
            work: Work | None = first
            while work is not None:
                if work.started is None:
                    work.started = time.monotonic()
                work.paced = False
                work.epoch = limit.epoch
                handed.append(work)
                hand.holding = []
                yield work.send
                if halt[0] or session.closed or self._stop.is_set():
                    return
                if allowance is not None and len(handed) >= allowance:
                    return
                if self._active > limit.limit:
                    return
                work = self._due()
                if work is not None:
                    hand.holding = [work]
                    if not await self._pace(work, _INLINE_WAIT):
                        carried.append(work)
                        return

        reported: set[int] = set()
        skipped: set[int] = set()
        crashed = False
        try:
            source = feed() if limiter is not None else afeed()
            async for outcome in session.send_many(source):
                if not 0 <= outcome.index < len(handed) or outcome.index in reported:
                    continue
                work = handed[outcome.index]
                broken = out_of_step(outcome) if outcome.status is _REFUSED else None
                if broken is not None:  # a lying server: retry elsewhere, drop this session
                    outcome, halt[0] = broken, True
                    await session.aclose()
                if reported and outcome.never_started and never_sent(outcome):
                    # Behind a break: never started, no try was used.
                    skipped.add(outcome.index)
                    await self._requeue(work)
                else:
                    decision = self._book(work, outcome)
                    if decision is not None:
                        await self._follow_up(work, outcome, decision)
                reported.add(outcome.index)
                if outcome.status is not _ACCEPTED:
                    halt[0] = halt[0] or halts(outcome)
        except MailError as exc:
            # send_many refuses up front (a closed session): nothing of the run was sent.
            # Raised later, it is a bug below, and the unreported items may have been sent.
            crashed = bool(reported)
            await session.aclose()
            error: MailError = exc if not crashed else ConnectionLost(f"sending failed: {exc}")
        except Exception as exc:  # a bug below must not lose the run: unknown fate
            crashed = True
            await session.aclose()
            error = ConnectionLost(f"sending failed: {type(exc).__name__}: {exc}")
        else:
            error = ConnectionLost("the session ended without reporting this message")
        for index, work in enumerate(handed):
            if index in reported:
                continue
            if reported and not crashed:  # the session closed before it: never sent, no try used
                await self._requeue(work)
            else:
                await self._record(work, outcome_of_error(index, error, unknown=crashed))
        return len(reported - skipped)

    # -- the consumer --------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[SendOutcome, None]:
        span = self._pool.telemetry.batch_span()
        loop = asyncio.get_running_loop()
        for _ in range(self._pool.limits.max_connections):
            # Each worker runs in a copy of this context with the batch span current, so the
            # connections it opens and the messages it sends are the batch span's descendants.
            ctx = batch_context(span)
            self._tasks.append(loop.create_task(self._worker_main(), context=ctx))
        buffered: dict[int, SendOutcome] = {}
        next_index = 0
        error: BaseException | None = None
        try:
            while True:
                entry = await self._out.get()
                if entry is None:
                    if self._crash is not None:
                        raise self._crash
                    if self._sched.finished and self._out.empty():
                        break
                    continue
                outcome, snapshot = entry  # already in the report (see _emit)
                if self._crash is not None:
                    raise self._crash
                if snapshot is not None and self._on_progress is not None:
                    self._on_progress(snapshot)
                if not self._ordered:
                    yield outcome
                    continue
                buffered[outcome.index] = outcome
                while next_index in buffered:
                    yield buffered.pop(next_index)
                    next_index += 1
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                await self._shutdown()
            finally:
                end_batch_span(
                    span,
                    {s.value: n for s, n in self._tracker.report().counts.items()},
                    cancelled=self._tracker.cancelled,
                    error=error if not isinstance(error, GeneratorExit) else None,
                )
        if self._sched.input_error is not None:
            raise self._sched.input_error

    async def _shutdown(self) -> None:
        unfinished = not self._sched.finished
        self._tracker.cancelled = unfinished
        if unfinished:
            for outcome in self._sched.stop("the batch was stopped"):
                self._emit(outcome, None)
        self._stop.set()
        try:
            async with self._cond:
                self._cond.notify_all()
            pending = [t for t in self._tasks if not t.done()]
            if pending:
                _, late = await asyncio.wait(pending, timeout=self.cancel_grace)
                for task in late:
                    task.cancel()
                if late:
                    await asyncio.wait(late)
        finally:  # also when this wait is itself cancelled
            for task in self._tasks:
                task.cancel()
            for hand in list(self._hands.values()):
                for handed, works in ((True, list(hand.handed)), (False, list(hand.holding))):
                    for work in works:
                        if work.index not in self._final:
                            outcome = self._sched.abandon(
                                work, handed_over=handed, reason="the batch was interrupted"
                            )
                            self._emit(outcome, work.started)
            drained = False  # the outcomes not yielded are in the report already (_emit)
            while not self._out.empty():
                drained = self._out.get_nowait() is not None or drained
            if drained and self._on_progress is not None:  # one last event, after the report
                with contextlib.suppress(Exception):
                    self._on_progress(self._tracker.progress())
