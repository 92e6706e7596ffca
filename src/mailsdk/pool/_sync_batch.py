"""The blocking batch runner: :class:`BatchRun`, what ``Pool.send_batch`` returns.

Layer: L5c (pool). One worker thread per pool connection takes work from the shared
:class:`~mailsdk.pool._work.Scheduler`, checks a connection out, takes the shared rate limit's
tokens once that connection is ready (so a send follows its tokens at once, never after a
connect and a greeting), sends a run of items on it and reports each outcome; the consumer's
thread yields them. At most ``pool.concurrency`` workers hold a connection at a time: when the
server throttles, the pool cuts that number and the workers above it give their connections up
(see :mod:`mailsdk.pool._concurrency`). Every item read from the input gets exactly one final
outcome, also when the consumer stops early, raises (Ctrl-C) or closes the run: the workers
finish what they already sent, queued retries end FAILED, and anything still in a worker's
hands ends FAILED (never sent, with the typed ``never_started`` marker) or UNKNOWN (sent, no
answer).

The workers run in a copy of the consumer's context with the batch span current, so the
sessions they open (and their per-message spans) descend from the batch span.
"""

from __future__ import annotations

import contextlib
import inspect
import queue
import threading
import time
import types
import typing
from collections.abc import Callable, Generator, Iterable, Iterator, Sized

import attrs

from mailsdk.batch.bucket import TokenBucket
from mailsdk.batch.limits import RateLimiter
from mailsdk.batch.report import BatchReport, BatchTracker, Progress
from mailsdk.batch.retry import RetryPolicy
from mailsdk.client import Session
from mailsdk.errors import ConnectionLost, MailError
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.pool._book import Slot
from mailsdk.pool._telemetry import batch_context, end_batch_span
from mailsdk.pool._work import (
    Scheduler,
    Work,
    checked_wait,
    halts,
    never_sent,
    out_of_step,
    outcome_of_error,
    recipient_count,
)

if typing.TYPE_CHECKING:
    from mailsdk.pool.sync_pool import Pool

__all__ = ["BatchRun"]

#: Consecutive failures to get a connection after which the batch gives up (and raises).
MAX_CONNECT_FAILURES: typing.Final = 10
#: Rate-limit waits shorter than this are slept inline instead of ending the chunk.
_INLINE_WAIT: typing.Final = 0.002
_REFUSED: typing.Final = DeliveryStatus.REFUSED
_POLL: typing.Final = 0.25  # workers re-check the stop flag at least this often


@attrs.define
class _Hand:
    """What one worker holds: work handed to its session (fate unknown if interrupted) and
    work taken but not sent yet."""

    handed: list[Work] = attrs.Factory(list[Work])
    holding: list[Work] = attrs.Factory(list[Work])


class BatchRun(Iterator[SendOutcome]):
    """A running batch: iterate it for one :class:`~mailsdk.SendOutcome` per input item.

    Use it in a ``with`` block (or call :meth:`close`) when you may stop iterating early: closing
    stops reading the input and waits for the messages already being sent. :attr:`report` is
    the :class:`~mailsdk.batch.BatchReport` of everything that finished, also after Ctrl-C.
    """

    def __init__(
        self,
        pool: Pool,
        items: Iterable[object],
        *,
        rate: RateLimiter | None,
        retry: RetryPolicy | None,
        on_progress: Callable[[Progress], None] | None,
        ordered: bool,
    ) -> None:
        self._pool = pool
        self._rate: RateLimiter = rate if rate is not None else TokenBucket()
        self._limit = pool.adaptive  # the pool's adaptive connection limit (read per message)
        self._sched = Scheduler(items, retry if retry is not None else RetryPolicy())
        self._tracker = BatchTracker(
            len(items) if isinstance(items, Sized) else None,
            connections=lambda: pool.concurrency,
        )
        self._on_progress = on_progress
        self._ordered = ordered
        self._lock = threading.Lock()  # taken alone where nobody needs waking (per message)
        self._cond = threading.Condition(self._lock)
        #: final outcomes on their way to the consumer, each with its progress snapshot
        self._out: queue.SimpleQueue[tuple[SendOutcome, Progress | None] | None] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._final: set[int] = set()
        self._hands: dict[int, _Hand] = {}
        self._threads: list[threading.Thread] = []
        self._crash: BaseException | None = None
        self._connect_failures = 0
        self._active = 0  # workers admitted to hold a connection (at most pool.concurrency)
        self._waiting = 0  # workers waiting on self._cond (notified only when there are some)
        self._close_requested = False  # close() was called from inside the iteration
        self._gen: Generator[SendOutcome, None, None] = self._run()

    @property
    def report(self) -> BatchReport:
        """The report of what has finished so far (complete once the iteration ended)."""
        return self._tracker.report()

    def __iter__(self) -> Iterator[SendOutcome]:
        return self._gen  # iterated directly: no extra call per outcome

    def __next__(self) -> SendOutcome:
        return next(self._gen)

    def close(self) -> None:
        """Stop the batch (see the class docstring); idempotent."""
        if inspect.getgeneratorstate(self._gen) == inspect.GEN_RUNNING:
            # Called from on_progress (inside the iteration): a generator cannot close itself,
            # so the iteration ends as soon as the callback returns.
            self._close_requested = True
            return
        self._gen.close()

    def _stop_soon(self) -> None:
        """Stop from another thread while the consumer is inside the iteration (a process
        batch's worker told to stop): read no more input, end the queued retries FAILED (never
        sent) and let the workers finish what they are sending; the iteration then ends."""
        with self._cond:
            if self._sched.finished or self._stop.is_set():
                return
            self._tracker.cancelled = True
            for outcome in self._sched.stop("the batch was stopped"):
                self._emit(outcome, None)
            self._stop.set()
            self._cond.notify_all()

    def __enter__(self) -> BatchRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    # -- bookkeeping shared by the workers (under self._cond) -----------------------------------

    def _emit(self, outcome: SendOutcome, started: float | None) -> None:
        """Give an item its final outcome: into the report at once, then to the consumer.

        The report is fed here, not by the consumer: an interrupt (Ctrl-C) that lands on the
        consumer's thread just as it takes an outcome from the queue would drop that outcome,
        and the report would miss a message the server has.
        """
        if outcome.index in self._final:
            return  # already given its final outcome (abandoned at cancellation)
        self._final.add(outcome.index)
        latency = time.monotonic() - started if started is not None else 0.0
        if self._on_progress is not None:
            self._out.put((outcome, self._tracker.finished(outcome, latency)))
        else:
            self._tracker.add(outcome, latency)
            self._out.put((outcome, None))
        if self._sched.finished:
            self._out.put(None)

    def _record(self, work: Work, outcome: SendOutcome) -> None:
        """Record one try's outcome (worker thread); on throttling, pause the rate and cut the
        pool's connections; a message that went through lets them grow back."""
        with self._lock:
            if work.index in self._final:  # abandoned at the shutdown already: keep that one
                return
            final, decision = self._sched.record(work, outcome, time.monotonic())
            if final is not None:
                self._emit(final, work.started)
            if self._waiting:  # a retry to take, a worker to admit, or the end to notice
                self._cond.notify_all()
        if decision.throttle > 0:
            self._rate.penalize(decision.throttle)
        if decision.throttled:
            self._pool.throttled(work.epoch)
        elif outcome.status is DeliveryStatus.ACCEPTED and self._limit.limit < self._limit.ceiling:
            self._pool.relieved(work.epoch)

    def _requeue(self, work: Work) -> None:
        with self._cond:
            if self._stop.is_set():
                self._emit(self._sched.abandon(work, handed_over=False, reason="stopped"), None)
            else:
                self._sched.requeue(work, time.monotonic())
            self._cond.notify_all()

    # -- admission: how many workers hold a connection (the pool's concurrency) ----------------

    def _admit(self) -> bool:
        """Wait until one more worker may hold a connection; ``False`` once the batch is over."""
        with self._cond:
            while not self._stop.is_set() and not self._sched.finished:
                if self._active < self._pool.concurrency:
                    self._active += 1
                    return True
                self._waiting += 1
                try:
                    self._cond.wait(_POLL)
                finally:
                    self._waiting -= 1
            return False

    def _leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def _over(self) -> bool:
        """True (and this worker stops holding a connection) when more workers hold one than
        the pool allows now: the server throttled."""
        if self._active <= self._pool.concurrency:
            return False
        with self._cond:
            if self._active <= self._pool.concurrency:
                return False
            self._active -= 1
            self._cond.notify_all()
            return True

    # -- the worker ----------------------------------------------------------------------------

    def _due(self) -> Work | None:
        """Work that is due now (a retry whose time has come, else the next input item)."""
        with self._lock:
            work = self._sched.take(time.monotonic())
            if work is not None:
                self._tracker.read = self._sched.read
            elif self._sched.finished:
                self._out.put(None)
            return work

    def _take(self) -> Work | None:
        """Due work, waiting for some (``None`` once the batch has no more)."""
        while not self._stop.is_set():
            work = self._due()
            if work is not None:
                return work
            with self._cond:
                if self._sched.finished:
                    return None
                ready = self._sched.next_ready()
                now = time.monotonic()
                timeout = _POLL if ready is None else min(_POLL, max(0.0, ready - now))
                self._waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._waiting -= 1
        return None

    def _pace(self, work: Work, hold: float) -> bool:
        """Take the rate limit's tokens for ``work`` (its connection is ready: the send follows
        the tokens at once). A wait up to ``hold`` seconds is slept here and ``True`` returned;
        a longer one is noted on the work (``ready``) and ``False`` returned."""
        wait = self._rate.reserve(messages=1, recipients=recipient_count(work.send))
        if wait != 0:  # a custom limiter is caller code: anything but 0 is checked
            wait = checked_wait(wait)
        if wait <= hold:
            if wait > 0:
                self._stop.wait(wait)
            return True
        work.paced = True
        work.ready = time.monotonic() + wait
        return False

    def _connect_failed(self, error: MailError) -> None:
        """Abort the batch when connecting cannot succeed: a permanent failure (credentials,
        TLS, a 5xx greeting) or too many in a row. Every message would otherwise try its own
        connection, and a wrong password would be tried once per message."""
        with self._cond:
            self._connect_failures += 1
            if not error.is_retryable or self._connect_failures >= MAX_CONNECT_FAILURES:
                if self._crash is None:
                    self._crash = error
                self._stop.set()
                self._cond.notify_all()
        self._out.put(None)

    def _worker_main(self) -> None:
        try:
            self._worker()
        except BaseException as exc:  # a bug or a limiter failure: report it to the consumer
            self._crash = exc
            self._out.put(None)

    def _worker(self) -> None:
        hand = _Hand()
        self._hands[threading.get_ident()] = hand
        while self._admit():
            over = False
            try:
                over = self._serve(hand)
            finally:
                if not over:
                    self._leave()
            if not over:
                return

    def _serve(self, hand: _Hand) -> bool:
        """Take work and send it, one connection at a time. Returns ``True`` when this worker
        gave its connection up because the pool's concurrency was cut (it waits to be admitted
        again), ``False`` when the batch has no more work for it."""
        carry: Work | None = None
        while not self._stop.is_set():
            work = carry or self._take()
            carry = None
            if work is None:
                return False
            hand.holding = [work]
            delay = work.ready - time.monotonic()
            if delay > 0:  # a retry's back-off, or the wait for the tokens it already has
                self._stop.wait(delay)
            if self._stop.is_set():
                return False  # still held: the shutdown reports it FAILED (never sent)
            try:
                slot = self._pool.checkout()
            except MailError as exc:
                hand.holding = []
                self._record(work, outcome_of_error(0, exc))
                self._connect_failed(exc)
                continue
            self._connect_failures = 0
            carry, over = self._use(slot, work, hand)
            if over:
                if carry is not None:  # another worker sends it
                    hand.holding = []
                    self._requeue(carry)
                return True
        return False

    def _use(self, slot: Slot[Session], work: Work, hand: _Hand) -> tuple[Work | None, bool]:
        """Send runs on a checked-out connection while due work comes and the connection may
        go on, then check it in. The rate limit's tokens are taken here, once the connection is
        ready, so a send follows its tokens at once (never after a connect or a greeting).

        Returns:
            The work to send next on another checkout (its tokens taken), and whether this
            worker is over the pool's concurrency (its connection was closed at check-in).
        """
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
                if not work.paced and not self._pace(work, hold):
                    next_work = work  # a long wait: the connection goes back to the pool meanwhile
                    break
                carried: list[Work] = []
                left = None if allowance is None else allowance - sent
                sent += self._send(session, work, left, hand, carried)
                next_work = carried[0] if carried else None
                hand.handed = []
                hand.holding = [next_work] if next_work is not None else []
                over = self._over()
                if over or session.closed or (allowance is not None and sent >= allowance):
                    break
                if next_work is not None:  # its tokens are taken: wait for them on this connection
                    delay = next_work.ready - time.monotonic()
                    if delay > hold:
                        break
                    if delay > 0:
                        self._stop.wait(delay)
        finally:
            self._pool.checkin(slot, sent=sent)
        return next_work, over

    def _send(
        self,
        session: Session,
        first: Work,
        allowance: int | None,
        hand: _Hand,
        carried: list[Work],
    ) -> int:
        """One ``send_many`` run on ``session``: ``first``, then whatever work is due, pulled
        one item at a time as the pipeline asks for it (so every connection stays busy and the
        work spreads evenly). Returns the messages the session attempted."""
        handed: list[Work] = []
        hand.handed = handed
        halt = [False]
        limit = self._limit

        def feed() -> Iterator[Outgoing]:
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
                    if not self._pace(work, _INLINE_WAIT):
                        carried.append(work)  # a longer rate wait: end this run, send it next
                        return

        reported: set[int] = set()
        skipped: set[int] = set()
        crashed = False
        try:
            for outcome in session.send_many(feed()):
                if not 0 <= outcome.index < len(handed) or outcome.index in reported:
                    continue
                work = handed[outcome.index]
                broken = out_of_step(outcome) if outcome.status is _REFUSED else None
                if broken is not None:  # a lying server: retry elsewhere, drop this session
                    outcome, halt[0] = broken, True
                    session.close()
                if reported and outcome.never_started and never_sent(outcome):
                    # Behind a break: never started, no try was used.
                    skipped.add(outcome.index)
                    self._requeue(work)
                else:
                    self._record(work, outcome)
                reported.add(outcome.index)
                if outcome.status is not DeliveryStatus.ACCEPTED:
                    halt[0] = halt[0] or halts(outcome)
        except MailError as exc:
            # send_many refuses up front (a closed session): nothing of the run was sent.
            # Raised later, it is a bug below, and the unreported items may have been sent.
            crashed = bool(reported)
            session.close()
            error: MailError = exc if not crashed else ConnectionLost(f"sending failed: {exc}")
        except Exception as exc:  # a bug below must not lose the run: unknown fate
            crashed = True
            session.close()
            error = ConnectionLost(f"sending failed: {type(exc).__name__}: {exc}")
        else:
            error = ConnectionLost("the session ended without reporting this message")
        for index, work in enumerate(handed):
            if index in reported:
                continue
            if reported and not crashed:  # the session closed before it: never sent, no try used
                self._requeue(work)
            else:
                self._record(work, outcome_of_error(index, error, unknown=crashed))
        return len(reported - skipped)

    # -- the consumer --------------------------------------------------------------------------

    def _run(self) -> Generator[SendOutcome, None, None]:
        span = self._pool.telemetry.batch_span()
        for _ in range(self._pool.limits.max_connections):
            # Each worker runs in a copy of this context with the batch span current, so the
            # connections it opens and the messages it sends are the batch span's descendants.
            ctx = batch_context(span)
            thread = threading.Thread(
                target=ctx.run, args=(self._worker_main,), name="mailsdk-batch", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        buffered: dict[int, SendOutcome] = {}
        next_index = 0
        error: BaseException | None = None
        try:
            while True:
                try:
                    entry = self._out.get(timeout=_POLL)
                except queue.Empty:
                    if self._crash is not None:
                        raise self._crash from None
                    if not any(t.is_alive() for t in self._threads):
                        with self._cond:
                            if self._sched.finished:
                                break
                        raise RuntimeError("batch workers stopped unexpectedly") from None
                    continue
                if entry is None:
                    if self._crash is not None:
                        raise self._crash
                    with self._cond:
                        if not self._sched.finished:
                            continue
                    if self._out.empty():
                        break
                    continue
                outcome, snapshot = entry  # already in the report (see _emit)
                if self._crash is not None:
                    raise self._crash
                if snapshot is not None and self._on_progress is not None:
                    self._on_progress(snapshot)
                    if self._close_requested:
                        return  # close() from on_progress: this outcome is in the report
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
                self._shutdown()
            finally:
                end_batch_span(
                    span,
                    {s.value: n for s, n in self._tracker.report().counts.items()},
                    cancelled=self._tracker.cancelled,
                    error=error if not isinstance(error, GeneratorExit) else None,
                )
        if self._sched.input_error is not None:
            raise self._sched.input_error

    def _shutdown(self) -> None:
        """Stop the workers and give every unfinished item its final outcome."""
        with self._cond:
            unfinished = not self._sched.finished
            self._tracker.cancelled = unfinished
            abandoned = self._sched.stop("the batch was stopped") if unfinished else []
            for outcome in abandoned:
                self._emit(outcome, None)
            self._stop.set()
            self._cond.notify_all()
        try:
            for thread in self._threads:
                thread.join()
        finally:  # also when the join itself is interrupted (a second Ctrl-C)
            with self._cond:
                for hand in list(self._hands.values()):
                    for handed, works in ((True, list(hand.handed)), (False, list(hand.holding))):
                        for work in works:
                            if work.index not in self._final:
                                outcome = self._sched.abandon(
                                    work, handed_over=handed, reason="the batch was interrupted"
                                )
                                self._emit(outcome, work.started)
            self._drain()

    def _drain(self) -> None:
        """Drop the outcomes not yielded (they are in the report already); then one last
        progress event if there were any."""
        drained = False
        while True:
            try:
                entry = self._out.get_nowait()
            except queue.Empty:
                break
            drained = drained or entry is not None
        if drained and self._on_progress is not None:
            with contextlib.suppress(Exception):
                self._on_progress(self._tracker.progress())
