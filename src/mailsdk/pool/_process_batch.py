"""A batch spread over worker processes: ``Pool.send_batch(items, processes=N)``.

Layer: L5c (pool, private). Builds on :class:`~mailsdk.pool.Pool` and its batch runner; the
worker side is :mod:`mailsdk.pool._process_worker`.

Why processes: one CPython process sends at most about one message per "client CPU per
message" (the interpreter lock serialises every connection of a pool), so a high-volume sender
on a many-core host leaves cores idle. Here each worker process runs a pool and batch (its
share of the connections and of the rate limit): an :class:`~mailsdk.pool.AsyncPool` on an
event loop of its own where the configuration allows, since one thread driving every
connection spends far less CPU per message than a thread per connection contending for the
interpreter lock, else an ordinary :class:`~mailsdk.pool.Pool` (see
:func:`~mailsdk.pool._async_worker.threads_needed`). The parent only hands out work and
collects outcomes, so it stays off the hot path:

* Work is handed out in chunks, on demand (a worker asks when its buffer runs low), so the
  input is still read lazily and a slow worker gets less. For a :class:`~collections.abc.
  Sequence` input the workers read the items from their own (forked) copy and only index
  ranges cross the pipe; other inputs are pickled chunk by chunk.
* Outcomes come back in batches (every ``_FLUSH_SIZE`` outcomes or ``_FLUSH_EVERY`` seconds).
* Every item handed to a worker ends in exactly one outcome: the worker's own batch gives it
  one, and if the worker dies first (killed, out of memory) the parent gives each of its
  unreported items an UNKNOWN outcome, because it may have been sent. Nothing is resent.
* Workers ignore SIGINT: Ctrl-C reaches the whole process group, and only the parent decides
  how a batch stops (the workers finish what they are sending, like an in-process batch).

The workers are forked (the client, its credentials and a Sequence input are inherited, never
pickled), so this needs a platform with ``fork``.
"""

from __future__ import annotations

import contextlib
import inspect
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import pickle
import time
import typing
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Sized

from mailsdk.batch.bucket import TokenBucket
from mailsdk.batch.limits import ConnectionLimiter, LocalConnectionLimiter, RateLimiter
from mailsdk.batch.report import BatchReport, BatchTracker, Progress
from mailsdk.batch.retry import RetryPolicy
from mailsdk.errors import (
    ConfigurationError,
    DeliveryUnknown,
    InvalidInputError,
    MailError,
)
from mailsdk.flows import DeliveryStatus, SendOutcome
from mailsdk.pool._async_worker import threads_needed
from mailsdk.pool._process_worker import WorkerPlan, indices_of, worker_main
from mailsdk.pool._work import not_started

if typing.TYPE_CHECKING:
    from mailsdk.pool.sync_pool import Pool

__all__ = ["ProcessBatchRun", "divide"]

_CHUNK: typing.Final = 64  # items handed to a worker at a time
_SPENT: typing.Final = 1e-6  # a penalty this short only empties a bucket (see _stop)
_STOP_GRACE: typing.Final = 5.0  # after the workers' own deadlines, before they are killed
_EXIT_GRACE: typing.Final = 2.0  # for a finished worker to exit before it is killed
_END: typing.Final[tuple[object, ...]] = ("end",)  # no more work

# The pipe protocol is described in mailsdk.pool._process_worker.


def divide(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal non-negative shares (the first ones larger)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _rate_shares(rate: RateLimiter | None, parts: int) -> list[RateLimiter | None]:
    """The rate limit of each worker: a :class:`TokenBucket` is divided (the sum of the shares
    never exceeds it); a limiter that is shared across processes by design is used as is."""
    if rate is None:
        return [None] * parts
    if isinstance(rate, TokenBucket):
        return list(rate.divided(parts))
    if getattr(rate, "shared_across_processes", False):
        return [rate] * parts
    raise ConfigurationError(
        f"send_batch(processes=...) cannot share {rate!r} between processes: pass a "
        "TokenBucket (each process gets its share) or a limiter shared across processes "
        "(one whose shared_across_processes attribute is true, like RedisRateLimiter)"
    )


def _cap_shares(cap: ConnectionLimiter | None, parts: int) -> list[ConnectionLimiter | None]:
    """The connection cap of each worker. A :class:`LocalConnectionLimiter` is divided: forked
    into every worker as is, each process would count only its own connections (``parts``
    times the cap). Other limiters (Redis) count across processes already."""
    if isinstance(cap, LocalConnectionLimiter):
        return [LocalConnectionLimiter(n) for n in divide(cap.limit, parts)]
    return [cap] * parts


def _readable(pipe: multiprocessing.connection.Connection) -> bool:
    try:
        return pipe.poll()
    except OSError:  # closed
        return False


def _unfit(index: int, why: str) -> SendOutcome:
    """The FAILED outcome of an item that cannot be passed to a worker process."""
    error = InvalidInputError(
        f"not sent: item {index} cannot be passed to a worker process ({why}); "
        "use processes=None for it"
    )
    return SendOutcome(index=index, status=DeliveryStatus.FAILED, error=error)


class _Worker:
    """The parent's view of one worker process."""

    def __init__(self, process: multiprocessing.process.BaseProcess,
                 pipe: multiprocessing.connection.Connection) -> None:  # fmt: skip
        self.process = process
        self.pipe = pipe
        self.outstanding: set[int] = set()  # handed out, no outcome yet
        self.finished = False  # said "done" or "crash", or died
        self.stopped = False  # was sent "stop" (it reads nothing after it)
        self.chunk: list[tuple[int, object]] = []  # the last "items" sent (see _unloadable)


class ProcessBatchRun(Iterator[SendOutcome]):
    """A batch over worker processes; the same contract as :class:`~mailsdk.pool.BatchRun`.

    Iterate it for one :class:`~mailsdk.SendOutcome` per item; :attr:`report` is the
    :class:`~mailsdk.batch.BatchReport`. Use it in a ``with`` block (or call :meth:`close`) if
    you may stop early: closing stops handing out work and waits for the workers to finish
    what they have started.

    :attr:`engine` says how the workers send: ``"asyncio"`` (an asyncio pool on one thread)
    or ``"threads"`` (a blocking pool, a thread per connection), and :attr:`threads_because`
    why, for the latter.
    """

    def __init__(
        self,
        pool: Pool,
        items: Iterable[object],
        *,
        processes: int,
        rate: RateLimiter | None,
        retry: RetryPolicy | None,
        on_progress: Callable[[Progress], None] | None,
        ordered: bool,
    ) -> None:
        if "fork" not in multiprocessing.get_all_start_methods():
            raise ConfigurationError("send_batch(processes=...) needs a platform with fork")
        if type(processes) is not int or processes < 1:  # run-time check: bool, float, str
            raise ConfigurationError(f"processes must be an int >= 1, got {processes!r}")
        cap = pool.connection_limiter
        parts = min(processes, pool.limits.max_connections)
        if isinstance(cap, LocalConnectionLimiter):
            parts = min(parts, cap.limit)  # every worker needs at least one connection
        #: why the workers run the threaded engine, ``None`` when they run the asyncio one
        self.threads_because = threads_needed(pool, rate)
        on_loop = self.threads_because is None
        self._plans = [
            WorkerPlan(connections, share, retry, cap_share, on_loop)
            for connections, share, cap_share in zip(
                divide(pool.limits.max_connections, parts),
                _rate_shares(rate, parts),
                _cap_shares(cap, parts),
                strict=True,
            )
        ]
        self._pool = pool
        self._sequence = items if isinstance(items, Sequence) else None
        self._input: Iterator[tuple[int, object]] = enumerate(items)
        self._next = 0  # the next index of a Sequence input to hand out
        self._exhausted = False
        self._complete = False  # the input was read to the end and every worker finished
        self._input_error: BaseException | None = None
        self._worker_error: BaseException | None = None  # the first a worker's batch raised
        self._tracker = BatchTracker(len(items) if isinstance(items, Sized) else None)
        self._on_progress = on_progress
        self._ordered = ordered
        self._workers: list[_Worker] = []
        self._rate = rate
        self._close_requested = False
        self._recorded: set[int] = set()  # indices whose outcome is in the report
        self._gen: Generator[SendOutcome, None, None] = self._run()

    @property
    def report(self) -> BatchReport:
        """The :class:`~mailsdk.batch.BatchReport` of what finished so far."""
        return self._tracker.report()

    @property
    def engine(self) -> typing.Literal["asyncio", "threads"]:
        """How each worker sends: ``"asyncio"`` or ``"threads"`` (see the class docstring)."""
        return "threads" if self.threads_because is not None else "asyncio"

    def __iter__(self) -> ProcessBatchRun:
        return self

    def __next__(self) -> SendOutcome:
        return next(self._gen)

    def close(self) -> None:
        """Stop handing out work and wait for the workers (idempotent)."""
        if inspect.getgeneratorstate(self._gen) == inspect.GEN_RUNNING:
            # Called from on_progress (inside the iteration): a generator cannot close itself,
            # so the iteration ends as soon as the callback returns.
            self._close_requested = True
            return
        self._gen.close()

    def __enter__(self) -> ProcessBatchRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- handing out work -------------------------------------------------------------------

    def _chunk(self) -> tuple[object, ...]:
        """The next message for a worker that asked: its work, or ``("end",)`` when the input
        is used up."""
        if self._exhausted:
            return _END
        if self._sequence is not None:
            start = self._next
            stop = min(len(self._sequence), start + _CHUNK)
            if start >= stop:
                self._exhausted = True
                return _END
            self._next = stop
            self._tracker.read += stop - start
            return ("range", start, stop)
        chunk: list[tuple[int, object]] = []
        try:
            for pair in self._input:
                chunk.append(pair)
                if len(chunk) == _CHUNK:
                    break
            else:
                self._exhausted = True
        except Exception as exc:  # re-raised to the consumer once the workers are done
            self._input_error = exc
            self._exhausted = True
        except BaseException:
            # A Ctrl-C in the input's own code (where a slow input keeps this thread): what it
            # yielded before is the caller's no more, and fails as not sent, not lost.
            self._tracker.read += len(chunk)
            for index, _ in chunk:
                self._recorded.add(index)
                self._tracker.add(
                    not_started(index, "the batch was stopped before this message"), 0.0
                )
            raise
        self._tracker.read += len(chunk)
        return ("items", chunk) if chunk else _END

    def _hand_out(self, worker: _Worker) -> list[SendOutcome]:
        """Answer a worker's "need"; items that cannot cross to a process fail here."""
        chunk = self._chunk()
        failed: list[SendOutcome] = []
        try:
            data = pickle.dumps(chunk)  # once: these bytes are what goes down the pipe
        except Exception:  # some item cannot cross to a process: find it, send the rest
            fit: list[tuple[int, object]] = []
            for index, item in typing.cast("list[tuple[int, object]]", chunk[1]):
                try:
                    pickle.dumps(item)
                except Exception as exc:
                    failed.append(_unfit(index, f"{type(exc).__name__}: {exc}"))
                else:
                    fit.append((index, item))
            chunk = ("items", fit)
            data = pickle.dumps(chunk)
        if chunk[0] == "items":
            worker.chunk = typing.cast("list[tuple[int, object]]", chunk[1])
        handed = indices_of(chunk) if chunk is not _END else []
        worker.outstanding.update(handed)
        try:
            worker.pipe.send_bytes(data)  # the worker's recv() unpickles it
        except OSError:
            # The worker died after asking: the chunk never reached it, so it was not sent
            # (its death itself is noticed on the next poll).
            why = "its worker process stopped before taking it"  # released by _settle
            failed += [not_started(i, why) for i in handed]
        return failed

    # -- the consumer ----------------------------------------------------------------------

    def _start(self) -> None:
        context = multiprocessing.get_context("fork")
        for plan in self._plans:
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=worker_main,
                args=(
                    theirs,
                    self._pool,
                    plan,
                    self._sequence,
                    [mine, *(w.pipe for w in self._workers)],
                ),
                name="mailsdk-batch-worker",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._workers.append(_Worker(process, mine))

    def _handle(self, worker: _Worker) -> list[tuple[SendOutcome, float]]:
        """Read one message from ``worker``; return the outcomes it brought."""
        try:
            message = worker.pipe.recv()
        except (EOFError, OSError):
            return self._lost(worker, "its pipe closed")
        kind = message[0]
        if kind == "need":
            return [(outcome, 0.0) for outcome in self._hand_out(worker)]
        if kind == "penalty":  # pass server throttling on to the other workers
            for other in self._workers:
                if other is not worker and not other.finished:
                    with contextlib.suppress(OSError):
                        other.pipe.send(message)
            return []
        if kind == "unloadable":
            return [(outcome, 0.0) for outcome in self._unloadable(worker, message[1])]
        if kind == "unread":  # its answer to "stop": these were never started
            return self._not_sent(worker, message[1])
        if kind == "out":  # released from ``outstanding`` by _settle, once in the report
            return typing.cast("list[tuple[SendOutcome, float]]", message[1])
        worker.finished = True
        if kind == "crash":
            _, text, error, unread = message
            if self._worker_error is None:
                # Raised to the consumer once the workers are done (as one process raises its
                # batch's error); no more work is handed out meanwhile.
                self._worker_error = error or MailError(f"a batch worker process failed: {text}")
            self._exhausted = True
            return self._not_sent(worker, unread) + self._lost(worker, f"it failed ({text})")
        # "done": what it never started fails as not sent (the batch was stopped); anything
        # else still outstanding would be a worker that lost track, hence UNKNOWN.
        return self._not_sent(worker, message[1]) + self._lost(
            worker, "it finished without reporting them"
        )

    def _unloadable(self, worker: _Worker, why: str) -> list[SendOutcome]:
        """The worker could not unpickle the last chunk it was sent: fail the items that do
        not survive a round trip here (all of them if each does: it fails there only), and
        send it the rest again (each time fewer, so this ends)."""
        pending = [pair for pair in worker.chunk if pair[0] in worker.outstanding]
        if worker.stopped:  # it reads nothing more: these were never started
            why = "the batch was stopped before this message"
            return [not_started(index, why) for index, _ in pending]
        fit: list[tuple[int, object]] = []
        failed: list[SendOutcome] = []
        for index, item in pending:
            try:
                pickle.loads(pickle.dumps(item))  # noqa: S301 - our own bytes, just made
            except Exception as exc:
                failed.append(_unfit(index, f"{type(exc).__name__}: {exc}"))
            else:
                fit.append((index, item))
        if not failed:
            failed, fit = [_unfit(index, why) for index, _ in fit], []
        worker.chunk = fit
        if fit:
            try:
                worker.pipe.send(("items", fit))
            except OSError:
                why = "its worker process stopped before taking it"
                failed += [not_started(index, why) for index, _ in fit]
        return failed

    def _not_sent(self, worker: _Worker, unread: object) -> list[tuple[SendOutcome, float]]:
        """FAILED outcomes for the items a worker gave back unstarted."""
        mine = [i for i in typing.cast("list[int]", unread) if i in worker.outstanding]
        return [(not_started(i, "the batch was stopped before this message"), 0.0) for i in mine]

    def _lost(self, worker: _Worker, why: str) -> list[tuple[SendOutcome, float]]:
        """Outcomes for the items a worker holds and will never report: UNKNOWN, since any of
        them may have reached the server (they are never resent)."""
        worker.finished = True
        lost = sorted(worker.outstanding - self._recorded)
        with contextlib.suppress(Exception):
            worker.pipe.close()
        return [
            (
                SendOutcome(
                    index=index,
                    status=DeliveryStatus.UNKNOWN,
                    error=DeliveryUnknown(
                        f"the worker process stopped before reporting this message: {why}; "
                        "the server may have it (it is not resent)"
                    ),
                ),
                0.0,
            )
            for index in lost
        ]

    def _settle(
        self, worker: _Worker, pairs: list[tuple[SendOutcome, float]]
    ) -> list[tuple[SendOutcome, Progress | None]]:
        """Put outcomes into the report, then release their items from ``worker``.

        In that order, so that a Ctrl-C between any two steps loses nothing: an outcome not
        yet recorded is still outstanding (the stop reports it UNKNOWN), and one recorded but
        still outstanding is not reported twice (``_recorded``). A progress snapshot is taken
        per outcome only for an ``on_progress`` callback (it costs more than the rest).
        """
        recorded: list[tuple[SendOutcome, Progress | None]] = []
        tracker, watched, seen = self._tracker, self._on_progress is not None, self._recorded
        for outcome, latency in pairs:
            if outcome.index in seen:
                continue
            seen.add(outcome.index)
            if watched:
                recorded.append((outcome, tracker.finished(outcome, latency)))
            else:
                tracker.add(outcome, latency)
                recorded.append((outcome, None))
        worker.outstanding.difference_update(outcome.index for outcome, _ in pairs)
        return recorded

    def _poll(self, timeout: float | None) -> list[tuple[SendOutcome, Progress | None]]:
        """Wait for worker messages (or deaths); return the outcomes they brought, recorded."""
        live = [w for w in self._workers if not w.finished]
        if not live:
            return []
        waitables: list[typing.Any] = [w.pipe for w in live] + [w.process.sentinel for w in live]
        ready = multiprocessing.connection.wait(waitables, timeout)
        found: list[tuple[SendOutcome, Progress | None]] = []
        for worker in live:
            if worker.pipe in ready:
                found += self._settle(worker, self._handle(worker))
            elif worker.process.sentinel in ready and not worker.pipe.poll():
                worker.process.join()
                lost = self._lost(worker, f"it exited ({worker.process.exitcode})")
                found += self._settle(worker, lost)
        return found

    def _run(self) -> Generator[SendOutcome, None, None]:
        self._start()
        buffered: dict[int, SendOutcome] = {}
        next_index = 0
        try:
            while any(not w.finished for w in self._workers):
                # Each polled outcome is in the report before any is yielded: if the consumer
                # stops at one of them, the rest are not lost.
                ready = self._poll(None)
                if self._on_progress is not None:
                    for _, progress in ready:
                        assert progress is not None  # taken for the callback (_settle)
                        self._on_progress(progress)
                if self._close_requested:
                    return  # close() from on_progress: these outcomes are in the report
                for outcome, _ in ready:
                    if not self._ordered:
                        yield outcome
                        continue
                    buffered[outcome.index] = outcome
                    while next_index in buffered:
                        yield buffered.pop(next_index)
                        next_index += 1
            for index in sorted(buffered):  # ordered, with a gap left by an unsendable item
                yield buffered.pop(index)
        finally:
            self._stop()
        if self._worker_error is not None:
            raise self._worker_error
        if self._input_error is not None:
            raise self._input_error
        if not self._complete:
            # Every worker died (their messages are UNKNOWN in the report): the rest of the
            # input was never read, and the caller must hear that the batch did not finish.
            codes = ", ".join(str(w.process.exitcode) for w in self._workers)
            raise MailError(
                f"every worker process of the batch stopped (exit codes {codes}) before the "
                "input was read to the end; run.report has the outcomes of what they took"
            )

    def _stop(self) -> None:
        """Hand out nothing more, let the workers finish, record every outcome left."""
        self._complete = (
            self._exhausted
            and all(w.finished for w in self._workers)
            and self._worker_error is None
        )
        self._tracker.cancelled = not self._complete
        self._exhausted = True
        if isinstance(self._rate, TokenBucket):
            # The workers spent shares of this bucket, which itself kept refilling: leave it
            # empty (as they left theirs), or a next batch or pool sharing it would start with
            # a fresh burst and the limit would hold per run, not overall.
            self._rate.penalize(_SPENT)
        for worker in self._workers:
            if not worker.finished:
                worker.stopped = True
                with contextlib.suppress(OSError):
                    worker.pipe.send(("stop",))
        patience = self._pool.client.config.timeouts.command
        deadline = time.monotonic() + (patience or 60.0) * 3 + _STOP_GRACE
        try:
            while any(not w.finished for w in self._workers):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._poll(left)  # recorded there
        finally:
            for worker in self._workers:
                if worker.finished:  # it said "done": let it exit (its pool QUIT already)
                    worker.process.join(_EXIT_GRACE)
                if worker.process.is_alive():
                    worker.process.kill()
                worker.process.join()
                # What it said before it died still counts (its "unread" answer to the stop
                # above all: those were never sent); only the rest is UNKNOWN.
                while not worker.finished and _readable(worker.pipe):
                    self._settle(worker, self._handle(worker))
                if not worker.finished:
                    self._settle(worker, self._lost(worker, "the batch was interrupted"))
