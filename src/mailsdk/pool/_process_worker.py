"""The worker side of ``Pool.send_batch(items, processes=N)``: one forked process's feed and
batch (the parent side is :mod:`mailsdk.pool._process_batch`).

Layer: L5c (pool, private). Each worker runs a pool and batch over the items its parent hands
out, and sends the outcomes back in batches. The pool and batch are an
:class:`~mailsdk.pool.AsyncPool` on an event loop of the worker's own where the configuration
allows (:mod:`mailsdk.pool._async_worker`), else an ordinary :class:`~mailsdk.pool.Pool` (one
thread per connection); the feed, the outbox and the penalties here serve both.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing.connection
import pickle
import signal
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence

import attrs

from mailsdk.batch.bucket import TokenBucket
from mailsdk.batch.limits import ConnectionLimiter, RateLimiter
from mailsdk.batch.report import BatchReport
from mailsdk.batch.retry import RetryPolicy
from mailsdk.flows import SendOutcome
from mailsdk.pool._work import renumbered

if typing.TYPE_CHECKING:
    from mailsdk.pool.sync_pool import Pool

__all__ = ["WorkerPlan", "indices_of", "worker_main"]

_LOW_WATER: typing.Final = 32  # a worker asks for more when fewer items than this are buffered
_FLUSH_SIZE: typing.Final = 128  # outcomes per batch sent to the parent...
_FLUSH_EVERY: typing.Final = 0.05  # ...or after this many seconds, whichever comes first
_WAIT_SLICE: typing.Final = 1.0  # the feed re-checks its state at least this often (see __iter__)

# Messages on a worker's pipe (tuples, pickled by multiprocessing.connection.Connection):
#   worker -> parent: ("need",) | ("out", [(SendOutcome, latency), ...])
#                     | ("unread", [index, ...]) (the answer to "stop")
#                     | ("penalty", seconds) (server throttling: for the other workers)
#                     | ("unloadable", text) (the last "items" did not unpickle here)
#                     | ("done", [unread index, ...])
#                     | ("crash", text, exception or None, [unread index, ...])
#   parent -> worker: ("range", start, stop) | ("items", [(index, item), ...]) | ("end",)
#                     | ("stop",) | ("penalty", seconds) (another worker's)


class _Reporting(typing.Protocol):
    """A running batch, either engine's: what it finished so far."""

    @property
    def report(self) -> BatchReport: ...


@attrs.frozen
class WorkerPlan:
    """What one worker gets: its connections, its share of the rate and of the cap, and its
    engine (``on_loop``: the asyncio one; see :func:`mailsdk.pool._async_worker.threads_needed`)."""

    connections: int
    rate: RateLimiter | None
    retry: RetryPolicy | None
    cap: ConnectionLimiter | None
    on_loop: bool = False


class _Feed:
    """The worker's input: items the parent hands out, asked for ahead of need.

    A reader thread takes every message from the parent and fills the buffer, so that a "stop"
    is seen at once (not when the buffer next runs dry). It answers the stop at once with the
    items never given to the batch ("unread"): the parent then knows they were not sent even
    if this process is killed while the batch finishes (a second Ctrl-C).
    """

    def __init__(self, pipe: multiprocessing.connection.Connection, lock: threading.Lock,
                 source: Sequence[object] | None, rate: RateLimiter) -> None:  # fmt: skip
        self._rate = rate  # takes the penalties the other workers met
        self._pipe = pipe
        self._lock = lock  # serialises sends on the pipe
        self._source = source
        self._cond = threading.Condition()  # guards everything below
        self._buffer: collections.deque[tuple[int, object]] = collections.deque()
        self._unread: list[int] = []  # handed out, never to be read (after an input error)
        self._asked = False
        self._ended = False  # "end" or "stop" came: no more work
        self._stopped = False  # "stop" came (or the parent is gone): give the batch no more
        self._error: Exception | None = None  # reading a Sequence item raised
        self._on_stop: Callable[[], None] | None = None  # stops the running batch (when_stopped)
        #: global index of each item read, by the worker's own (local) index
        self.indices: list[int] = []
        #: when each item was read (its latency starts there), by local index
        self.read_at: list[float] = []
        threading.Thread(target=self._read, name="mailsdk-batch-feed", daemon=True).start()

    def _read(self) -> None:
        # Reads until "stop" or end-of-file, also after "end": a stop must still reach a
        # worker that has all its work but not sent it yet.
        while True:
            try:
                message: tuple[typing.Any, ...] = self._pipe.recv()
            except (EOFError, OSError):  # the parent is gone: stop reading new work
                message = ("stop",)
            except Exception as exc:
                # The message came whole but does not unpickle here (an item's own reduce
                # failed): the parent knows which items it held (the chunk asked for last),
                # fails those that cannot cross and sends the rest again. Not read, the
                # reader's death would leave this worker waiting for that answer for ever.
                with contextlib.suppress(OSError), self._lock:
                    self._pipe.send(("unloadable", f"{type(exc).__name__}: {exc}"))
                with self._cond:
                    self._asked = False
                    self._cond.notify_all()
                continue
            if message[0] == "stop":
                with self._cond:
                    self._stopped = self._ended = True
                    self._cond.notify_all()
                    on_stop = self._on_stop
                unread = self.unread()
                if on_stop is not None:
                    with contextlib.suppress(Exception):  # the batch (and its loop) ended
                        on_stop()
                with contextlib.suppress(OSError), self._lock:
                    self._pipe.send(("unread", unread))
                return
            if message[0] == "penalty":  # another worker's server throttling: pause too
                self._rate.penalize(message[1])
                continue
            with self._cond:
                if message[0] == "end":
                    self._ended = True
                elif self._error is not None:  # the input ended at an error: never read
                    self._unread.extend(indices_of(message))
                else:
                    self._buffer.extend(self._load(message))
                self._asked = False
                self._cond.notify_all()

    def _load(self, message: tuple[typing.Any, ...]) -> list[tuple[int, object]]:
        if message[0] == "items":
            return typing.cast("list[tuple[int, object]]", message[1])
        source = typing.cast("Sequence[object]", self._source)
        pairs: list[tuple[int, object]] = []
        for i in range(message[1], message[2]):
            try:
                pairs.append((i, source[i]))
            except Exception as exc:
                # The batch ends its input here and re-raises this (as in one process); the
                # rest of the range is never read, so it fails as not sent.
                self._error = exc
                self._unread.extend(range(i, message[2]))
                break
        return pairs

    def when_stopped(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` (from the reader thread) when the parent stops this worker, or at once
        if it did already: the batch must stop too, not only its input, or its queued retries
        would hold the worker (until the parent kills it and calls them UNKNOWN) and be sent
        after the stop."""
        with self._cond:
            self._on_stop = stop
            stopped = self._stopped
        if stopped:
            stop()

    def unread(self) -> list[int]:
        """Take the indices handed to this worker and never given to its batch."""
        with self._cond:
            unread = [index for index, _ in self._buffer] + self._unread
            self._buffer.clear()
            self._unread = []
            return unread

    def __iter__(self) -> Iterator[object]:
        while True:
            got: tuple[int, object] | None = None
            with self._cond:
                if self._stopped:
                    return
                if self._buffer:
                    got = self._buffer.popleft()
                    self.indices.append(got[0])
                    self.read_at.append(time.monotonic())
                elif self._error is not None:
                    error, self._error = self._error, None
                    self._ended = True
                    raise error
                elif self._ended:
                    return
                elif self._asked:
                    # Nothing buffered, more asked for: wait for the parent's answer. With the
                    # asyncio engine this call comes from the event loop (the batch's scheduler
                    # pulls the input with next()), so the wait holds every connection of this
                    # worker, and must stay rare and short. Rare: the feed asks when fewer
                    # than _LOW_WATER items are left, so the answer (a pipe round trip, well
                    # under a millisecond) has the sending of those items to arrive in
                    # (several milliseconds even at ~10k messages/s); on loopback against
                    # smtp-sink a worker waited 2-9 times in a run of 10,000 messages.
                    # Longer waits need a parent that waits itself: for a slow input
                    # generator (which holds an in-process asyncio batch just the same), or for
                    # a consumer that stopped iterating (the parent answers while iterated; the
                    # threaded engine stalls then too, once the outcomes fill the pipe). Never
                    # for ever: an answer, a "stop" or the pipe's end-of-file (the parent
                    # died) wakes it, and a lost wake-up is re-checked every _WAIT_SLICE. Not
                    # a "nothing yet" item instead: the scheduler reads an input as items or
                    # its end, and teaching it a third answer would change every batch for
                    # this one.
                    self._cond.wait(_WAIT_SLICE)
                    continue
                ask = len(self._buffer) < _LOW_WATER and not (
                    self._asked or self._ended or self._error
                )
                self._asked = self._asked or ask
            if ask:
                with self._lock:
                    self._pipe.send(("need",))
            if got is not None:
                yield got[1]


def indices_of(message: tuple[typing.Any, ...]) -> list[int]:
    """The input indices a "range" or "items" message hands out."""
    if message[0] == "range":
        return list(range(message[1], message[2]))
    return [index for index, _ in typing.cast("list[tuple[int, object]]", message[1])]


def worker_main(
    pipe: multiprocessing.connection.Connection,
    pool: Pool,
    plan: WorkerPlan,
    source: Sequence[object] | None,
    parent_ends: list[multiprocessing.connection.Connection],
) -> None:
    """A worker process: one pool and one batch over the items the parent hands out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how the batch stops
    # The fork copied the parent's end of this worker's pipe (and of the earlier workers'):
    # while they are open here, no worker sees end-of-file when the parent dies, and the
    # orphans would wait for work forever.
    for end in parent_ends:
        end.close()
    lock = threading.Lock()
    # Without a rate, a batch still keeps its penalties in an unlimited bucket (as one process).
    rate = _SharedPenalties(plan.rate or TokenBucket(), pipe, lock)
    feed = _Feed(pipe, lock, source, rate.share)
    outbox = _Outbox(pipe, lock)
    forwarder = _Forwarder(feed, outbox)
    try:
        if plan.on_loop:
            from mailsdk.pool._async_worker import send_on_loop

            send_on_loop(
                pool,
                connections=plan.connections,
                cap=plan.cap,
                items=feed,
                rate=rate,
                retry=plan.retry,
                forwarder=forwarder,
            )
        else:
            _send_in_threads(pool, plan, feed, rate, forwarder)
        forwarder.forward_the_rest()  # a stopped batch ends its last items unyielded
        outbox.close_with(("done", feed.unread()))
    except BaseException as exc:  # reported, then the parent settles the unreported items
        with contextlib.suppress(Exception):
            forwarder.forward_the_rest()
            unread, text = feed.unread(), f"{type(exc).__name__}: {exc}"
            outbox.close_with(("crash", text, _portable(exc), unread))
        raise


def _send_in_threads(
    pool: Pool, plan: WorkerPlan, feed: _Feed, rate: _SharedPenalties, forwarder: _Forwarder
) -> None:
    """The threaded engine: an ordinary pool and batch, one thread per connection."""
    from mailsdk.pool._sync_batch import BatchRun
    from mailsdk.pool.sync_pool import Pool

    mine = Pool(
        pool.client,
        max_connections=plan.connections,
        max_messages_per_connection=pool.limits.max_messages_per_connection,
        max_connection_age=pool.limits.max_connection_age,
        idle_timeout=pool.limits.idle_timeout,
        health_check_after=pool.limits.health_check_after,
        checkout_timeout=pool.limits.checkout_timeout,
        connection_limiter=plan.cap,
    )
    with mine, mine.send_batch(feed, rate=rate, retry=plan.retry) as run:
        assert isinstance(run, BatchRun)  # no processes= here
        forwarder.started(run, run._stop_soon)  # pyright: ignore[reportPrivateUsage]
        for outcome in run:
            forwarder.forward(outcome)


class _Forwarder:
    """Takes an engine's outcomes to the outbox, with their global index and latency, and
    counts them: a crash forwards the rest of the batch's report (see ``forward_the_rest``)."""

    def __init__(self, feed: _Feed, outbox: _Outbox) -> None:
        self._feed = feed
        self._outbox = outbox
        self._run: _Reporting | None = None
        self._yielded = 0  # outcomes the batch yielded (the first ones of its report, in order)

    def started(self, run: _Reporting, stop: Callable[[], None]) -> None:
        self._run = run
        self._feed.when_stopped(stop)

    def forward(self, outcome: SendOutcome) -> None:
        self._yielded += 1
        self._outbox.put(_global(outcome, self._feed, time.monotonic()))

    def forward_the_rest(self) -> None:
        """A batch that raises (wrong credentials, an unreadable input item) has still given
        every item it read a final outcome, in its report rather than yielded: forward those,
        or the parent would have to call them UNKNOWN although they were never sent."""
        if self._run is None:
            return
        report: BatchReport = self._run.report
        now = time.monotonic()
        for late in report.outcomes[self._yielded :]:
            self._outbox.put(_global(late, self._feed, now))


class _Outbox:
    """Outcomes on their way to the parent, sent in batches: when ``_FLUSH_SIZE`` are waiting,
    and by a flusher thread at most ``_FLUSH_EVERY`` after they came (the batch may yield
    nothing more for a long time: a rate wait, retries far off)."""

    def __init__(self, pipe: multiprocessing.connection.Connection, lock: threading.Lock) -> None:
        self._pipe = pipe
        self._lock = lock  # serialises sends on the pipe; guards _pending
        self._pending: list[tuple[SendOutcome, float]] = []
        self._closed = threading.Event()
        threading.Thread(target=self._flush_often, name="mailsdk-batch-outbox", daemon=True).start()

    def put(self, pair: tuple[SendOutcome, float]) -> None:
        with self._lock:
            self._pending.append(pair)
            if len(self._pending) >= _FLUSH_SIZE:
                self._send()

    def _send(self) -> None:  # under self._lock
        if self._pending:
            self._pipe.send(("out", self._pending))
            self._pending = []

    def _flush_often(self) -> None:
        while not self._closed.wait(_FLUSH_EVERY):
            with contextlib.suppress(OSError), self._lock:
                self._send()

    def close_with(self, last: tuple[typing.Any, ...]) -> None:
        """Send what is waiting, then ``last`` (the worker's final word)."""
        self._closed.set()
        with self._lock:
            self._send()
            self._pipe.send(last)


class _SharedPenalties:
    """A worker's rate limit whose penalties (server throttling) reach the other workers too,
    through the parent: the server asked the sender to slow down, not one process of it."""

    def __init__(self, share: RateLimiter, pipe: multiprocessing.connection.Connection,
                 lock: threading.Lock) -> None:  # fmt: skip
        self.share = share
        self._pipe = pipe
        self._lock = lock

    def reserve(self, *, messages: int = 1, recipients: int = 0) -> float:
        return self.share.reserve(messages=messages, recipients=recipients)

    def penalize(self, seconds: float) -> None:
        self.share.penalize(seconds)
        with contextlib.suppress(OSError), self._lock:
            self._pipe.send(("penalty", seconds))


def _global(outcome: SendOutcome, feed: _Feed, now: float) -> tuple[SendOutcome, float]:
    """A worker's outcome with its index in the whole input, and its latency."""
    local = outcome.index
    # renumbered(), not attrs.evolve(): evolve introspects the class on every call (per message)
    index, latency = feed.indices[local], now - feed.read_at[local]
    return renumbered(outcome, index, outcome.key, outcome.attempts), latency


def _portable(exc: BaseException) -> BaseException | None:
    """``exc`` if it survives the pipe (the parent re-raises it typed), else ``None``."""
    if not isinstance(exc, Exception):
        return None  # SystemExit and the like: the parent raises its own MailError
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
    except Exception:
        return None
    return exc
