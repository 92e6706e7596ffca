# Generated from src/mailsdk/pool/async_pool.py by scripts/unasync.py: do not edit.
# Edit the asyncio original, then run `python scripts/unasync.py` (docs/architecture.md).
"""The blocking connection pool: :class:`Pool`.

Layer: L5c (pool). The decisions are :class:`~mailsdk.pool._book.PoolBook`'s; this module does
the I/O (connect, NOOP, QUIT) outside its lock and waits on a condition for a free connection.
This file is generated from ``async_pool.py`` by ``scripts/unasync.py``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import types
from collections.abc import Callable, Generator, Iterable, Sequence

from mailsdk._types import MessageLike
from mailsdk.batch.limits import (
    ConnectionLimiter,
    LocalConnectionLimiter,
    RateLimiter,
)
from mailsdk.batch.report import Progress
from mailsdk.batch.retry import RetryPolicy
from mailsdk.client import Client, Session
from mailsdk.errors import MailError, PoolTimeout
from mailsdk.esmtp import MailOptions, RcptOptions
from mailsdk.flows import SendResult
from mailsdk.pool._book import Open, PoolBook, PoolLimits, Reuse, Slot
from mailsdk.pool._concurrency import Concurrency
from mailsdk.pool._process_batch import ProcessBatchRun
from mailsdk.pool._sync_batch import BatchRun
from mailsdk.pool._telemetry import PoolTelemetry
from mailsdk.pool._work import throttling

__all__ = ["Pool"]

_LEASE_POLL: float = 0.05  # how often a caller re-asks a shared limiter that said "full"


def _reap_interval(limits: PoolLimits) -> float | None:
    """How often idle connections are checked for expiry (``None``: they never expire)."""
    bounds = [b for b in (limits.idle_timeout, limits.max_connection_age) if b is not None]
    return max(0.05, min(bounds) / 2) if bounds else None


class Pool:
    """A thread-safe pool of sessions to one server, for many concurrent sends.

    Create it with :meth:`mailsdk.Client.pool` and use it with ``with``. Any number
    of threads may call :meth:`send_message` at once; each call gets a
    connection to itself (a session is never shared by two callers), waiting up to
    ``checkout_timeout`` for one.

    Args:
        client: the client whose configuration (TLS, AUTH, timeouts) every connection uses;
            TLS and AUTH happen once per connection.
        max_connections: the most connections open at once.
        max_messages_per_connection: after this many messages a connection is closed with QUIT
            and a new one opened (``None``: no limit).
        max_connection_age: seconds after which a connection is retired (``None``: no limit).
        idle_timeout: an idle connection is closed after this many seconds (``None``: never).
        health_check_after: a connection idle this long is checked with NOOP before reuse
            (a server that closed it is noticed before a message is entrusted to it).
        checkout_timeout: how long a send waits for a free connection before raising
            :class:`~mailsdk.errors.PoolTimeout` (``None``: forever).
        connection_limiter: a cap shared with other pools or processes (the
            in-process cap of ``max_connections`` always holds too).
        clock: the monotonic clock (tests).
    """

    def __init__(
        self,
        client: Client,
        *,
        max_connections: int = 4,
        max_messages_per_connection: int | None = 1000,
        max_connection_age: float | None = 300.0,
        idle_timeout: float | None = 30.0,
        health_check_after: float = 1.0,
        checkout_timeout: float | None = 30.0,
        connection_limiter: ConnectionLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limits = PoolLimits(
            max_connections=max_connections,
            max_messages_per_connection=max_messages_per_connection,
            max_connection_age=max_connection_age,
            idle_timeout=idle_timeout,
            health_check_after=health_check_after,
            checkout_timeout=checkout_timeout,
        )
        self._book: PoolBook[Session] = PoolBook(self.limits)
        #: the caller's shared cap (``None``: only ``max_connections`` holds)
        self.connection_limiter = connection_limiter
        self._limiter: ConnectionLimiter = connection_limiter or LocalConnectionLimiter(
            max_connections
        )
        self._clock = clock
        self._cond = threading.Condition()
        self._reaper: threading.Thread | None = None
        self._closing = threading.Event()
        self.telemetry = PoolTelemetry(
            client.config.endpoint.describe(),
            self._counts,
            client.config.instrumentation,
            limit=lambda: self._book.concurrency.limit,
        )

    def __repr__(self) -> str:
        open_, idle, busy = self._counts()
        where = self.client.config.endpoint.describe()
        return f"<Pool {where} open={open_} idle={idle} busy={busy}>"

    def _counts(self) -> tuple[int, int, int]:
        book = self._book
        return book.open, book.idle, book.busy

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._book.closed

    def stats(self) -> dict[str, int]:
        """Connections ``open``, ``idle`` and ``busy`` right now (see also :attr:`concurrency`)."""
        open_, idle, busy = self._counts()
        return {"open": open_, "idle": idle, "busy": busy}

    @property
    def concurrency(self) -> int:
        """How many connections callers may use now: ``max_connections``, fewer after the
        server answered with throttling replies (see :meth:`throttled`)."""
        return self._book.concurrency.limit

    @property
    def adaptive(self) -> Concurrency:
        """The adaptive connection limit itself (:attr:`concurrency` is its ``limit``)."""
        return self._book.concurrency

    @property
    def epoch(self) -> int:
        """The number of throttling replies that counted so far: a send notes it when it
        starts and hands it to :meth:`throttled` or :meth:`relieved` with its reply."""
        return self._book.concurrency.epoch

    def throttled(self, epoch: int | None = None) -> None:
        """Record a throttling reply (421/451 4.7.x, 452 "too many", 4.3.2) to a send made in
        ``epoch`` (``None``: now): halve the connections in use, down to one. Replies to sends
        made before the last cut are ignored (they answer the same overload). Idle
        connections above the new limit are closed with QUIT, busy ones when given back."""
        with self._cond:
            now = self._clock()
            surplus = self._book.throttled(self.epoch if epoch is None else epoch, now)
        for slot in surplus:
            self._close_slot(slot, polite=True)

    def relieved(self, epoch: int | None = None, count: int = 1) -> None:
        """Record ``count`` replies without throttling to sends made in ``epoch`` (``None``:
        now): after a cut the limit grows back by one connection per round of good replies."""
        book = self._book
        if not book.concurrency.reduced:
            return  # the common case: no lock taken per message
        with self._cond:
            if book.succeeded(book.concurrency.epoch if epoch is None else epoch, count):
                self._cond.notify_all()

    # -- checkout ----------------------------------------------------------------------------

    def _close_slot(self, slot: Slot[Session], *, polite: bool) -> None:
        session = slot.session
        try:
            if session is not None and not session.closed:
                if polite:
                    with contextlib.suppress(MailError):
                        session.quit()
                session.close()
        finally:
            if slot.lease is not None:
                with contextlib.suppress(Exception):
                    self._limiter.release(slot.lease)

    def checkout(self) -> Slot[Session]:
        """Take a connection for the calling thread alone (opening one if allowed).

        Raises:
            PoolTimeout: none became free within ``checkout_timeout``.
            MailError: opening a new connection failed (connect, TLS, AUTH).
        """
        started = self._clock()
        limit = self.limits.checkout_timeout
        deadline = None if limit is None else started + limit
        while True:
            with self._cond:
                if self._book.closed:
                    raise MailError("the pool is closed")
                decision, expired = self._book.checkout(self._clock())
                if not isinstance(decision, Reuse | Open):
                    remaining = None if deadline is None else deadline - self._clock()
                    if remaining is not None and remaining <= 0:
                        self._expired(expired)
                        raise PoolTimeout(
                            f"no pooled connection became free within {limit}s", phase="checkout"
                        )
                    self._cond.wait(remaining)
            self._expired(expired)
            if isinstance(decision, Reuse):
                slot = decision.slot
                if not self._lease_alive(slot):  # a shared lease expired while it sat idle
                    self._forget(slot, polite=True)
                    continue
                if decision.check and not self._healthy(slot):
                    self._forget(slot, polite=False)
                    continue
            elif isinstance(decision, Open):
                slot = decision.slot
                if not self._open(slot, deadline):
                    continue
            else:
                continue
            self.telemetry.checked_out(self._clock() - started)
            return slot

    def _expired(self, slots: Sequence[Slot[Session]]) -> None:
        for slot in slots:
            self._close_slot(slot, polite=True)

    def _lease_alive(self, slot: Slot[Session]) -> bool:
        if slot.lease is None:
            return True
        try:
            return bool(self._limiter.renew(slot.lease))
        except Exception:
            return False

    def _healthy(self, slot: Slot[Session]) -> bool:
        session = slot.session
        if session is None or session.closed:
            return False
        try:
            session.noop()
        except MailError:
            return False
        return True

    def _forget(self, slot: Slot[Session], *, polite: bool) -> None:
        with self._cond:
            self._book.discard(slot)
            self._cond.notify()
        self._close_slot(slot, polite=polite)

    def _open(self, slot: Slot[Session], deadline: float | None) -> bool:
        try:
            lease = self._limiter.try_acquire()
        except BaseException:  # a shared limiter's store failing: the slot must not leak
            with self._cond:
                self._book.discard(slot)
                self._cond.notify()
            raise
        if lease is None:  # the shared cap is reached: give the slot back and poll
            with self._cond:
                self._book.discard(slot)
            if deadline is not None and self._clock() >= deadline:
                raise PoolTimeout("the shared connection limit stayed full", phase="checkout")
            time.sleep(_LEASE_POLL)
            return False
        try:
            session = self.client.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                self._limiter.release(lease)
            with self._cond:
                self._book.discard(slot)
                self._cond.notify()
            raise
        with self._cond:
            self._book.opened(slot, session, lease, self._clock())
            if self._reaper is None and _reap_interval(self.limits) is not None:
                self._reaper = threading.Thread(
                    target=self._reap, name="mailsdk-pool-reaper", daemon=True
                )
                self._reaper.start()
        return True

    def _reap(self) -> None:
        """Close idle connections past their idle timeout or age, even when nobody sends
        (they hold a slot of a shared connection cap, and the server will drop them anyway)."""
        interval = _reap_interval(self.limits)
        assert interval is not None
        while not self._closing.wait(interval):
            with self._cond:
                if self._book.closed:
                    return
                expired = self._book.expire(self._clock())
                if expired:
                    self._cond.notify_all()
            self._expired(expired)

    def checkin(self, slot: Slot[Session], *, sent: int) -> None:
        """Give a connection back after ``sent`` messages; a broken or retired one is closed."""
        session = slot.session
        usable = session is not None and not session.closed
        if usable and not self._lease_alive(slot):
            usable = False  # the shared lease expired: another process may use the slot now
        with self._cond:
            keep = self._book.checkin(slot, self._clock(), sent=sent, usable=usable)
            self._cond.notify()
        if not keep:
            self._close_slot(slot, polite=usable)

    def allowance(self, slot: Slot[Session]) -> int | None:
        """How many more messages the checked-out connection may send."""
        with self._cond:
            return self._book.allowance(slot)

    @contextlib.contextmanager
    def connection(self) -> Generator[Session, None, None]:
        """``with pool.connection() as session``: a session for this thread alone.

        The session goes back to the pool at the end of the block; it is closed instead when it
        broke, or when the block ended with an exception that is not a :class:`MailError`.
        """
        slot = self.checkout()
        session = slot.session
        assert session is not None
        try:
            yield session
        except BaseException as exc:
            if not isinstance(exc, MailError):
                # Interrupted mid-command (Ctrl-C, a bug): the conversation may be
                # half-way through a transaction, so the session must never serve another caller.
                session.close()
            raise
        finally:
            self.checkin(slot, sent=1)

    # -- sending -----------------------------------------------------------------------------

    def send_message(
        self,
        message: MessageLike,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | str | None = None,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptions | None = None,
    ) -> SendResult:
        """Send one message on a pooled connection (thread-safe); same errors as
        :meth:`mailsdk.Session.send_message`, plus :class:`~mailsdk.errors.PoolTimeout`."""
        epoch = self.epoch
        with self.connection() as session:
            try:
                result = session.send_message(
                    message,
                    sender=sender,
                    recipients=recipients,
                    mail_options=mail_options,
                    rcpt_options=rcpt_options,
                )
            except MailError as exc:
                if throttling(exc):
                    self.throttled(epoch)
                raise
        self.relieved(epoch)
        return result

    def send_batch(
        self,
        items: Iterable[object],
        *,
        rate: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        ordered: bool = False,
        processes: int | None = None,
    ) -> BatchRun | ProcessBatchRun:
        """Send many messages over the pool; iterate the result for one outcome per item.

        Args:
            items: :class:`~mailsdk.Outgoing` items or plain messages, read lazily.
            rate: a shared rate limit (e.g. :class:`~mailsdk.batch.TokenBucket`).
            retry: the retry policy (``None``: :class:`~mailsdk.batch.RetryPolicy` defaults).
            on_progress: called with a :class:`~mailsdk.batch.Progress` after every outcome.
            ordered: yield outcomes in input order instead of completion order.
            processes: spread the batch over this many forked worker processes (to use more
                than one CPU core), each with its share of ``max_connections`` and of ``rate``
                (a :class:`~mailsdk.batch.TokenBucket` is divided; a limiter shared across
                processes, like the Redis one, is used as is). ``None`` or 1: this process.

        Returns:
            A :class:`BatchRun` (a :class:`ProcessBatchRun` with ``processes``): an iterator
            of :class:`~mailsdk.SendOutcome` with ``report``.

        Raises:
            ConfigurationError: ``processes`` is not a positive int, the platform cannot
                fork, or ``rate`` cannot be shared between processes.
        """
        if processes is not None and (type(processes) is not int or processes != 1):
            return ProcessBatchRun(
                self,
                items,
                processes=processes,
                rate=rate,
                retry=retry,
                on_progress=on_progress,
                ordered=ordered,
            )
        return BatchRun(
            self, items, rate=rate, retry=retry, on_progress=on_progress, ordered=ordered
        )

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """QUIT the idle connections; busy ones close when their caller gives them back."""
        self._closing.set()
        with self._cond:
            idle = [] if self._book.closed else self._book.close()
            self._cond.notify_all()
        for slot in idle:
            self._close_slot(slot, polite=True)
        self.telemetry.shutdown()

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()
