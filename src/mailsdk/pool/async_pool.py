"""The asyncio connection pool: :class:`AsyncPool`.

Layer: L5c (pool). The decisions are :class:`~mailsdk.pool._book.PoolBook`'s; this module does
the I/O (connect, NOOP, QUIT) outside its lock and waits on a condition for a free connection.
The blocking twin ``sync_pool.py`` is generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

import asyncio  # unasync: drop
import contextlib
import inspect  # unasync: drop

# unasync: add import threading
import time
import types
import typing  # unasync: drop

# unasync: becomes from collections.abc import Callable, Generator, Iterable, Sequence
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence

from mailsdk._types import MessageLike
from mailsdk.batch.limits import (
    AsyncConnectionLimiter,  # unasync: drop
    AsyncRateLimiter,  # unasync: drop
    ConnectionLimiter,
    LocalConnectionLimiter,
    RateLimiter,
)
from mailsdk.batch.report import Progress
from mailsdk.batch.retry import RetryPolicy
from mailsdk.client import AsyncClient, AsyncSession
from mailsdk.errors import MailError, PoolTimeout
from mailsdk.esmtp import MailOptions, RcptOptions
from mailsdk.flows import SendResult
from mailsdk.pool._async_batch import AsyncBatchRun  # unasync: drop
from mailsdk.pool._book import Open, PoolBook, PoolLimits, Reuse, Slot
from mailsdk.pool._concurrency import Concurrency

# unasync: add from mailsdk.pool._process_batch import ProcessBatchRun
# unasync: add from mailsdk.pool._sync_batch import BatchRun
from mailsdk.pool._telemetry import PoolTelemetry
from mailsdk.pool._work import throttling

__all__ = ["AsyncPool", "maybe_await"]  # unasync: becomes __all__ = ["Pool"]

_LEASE_POLL: float = 0.05  # how often a caller re-asks a shared limiter that said "full"


# unasync: async-only
T = typing.TypeVar("T")


async def maybe_await(value: T | typing.Awaitable[T]) -> T:
    """The value, awaited when a limiter returned an awaitable (sync and async limiters)."""
    if inspect.isawaitable(value):
        return await value
    return value


# unasync: end
def _reap_interval(limits: PoolLimits) -> float | None:
    """How often idle connections are checked for expiry (``None``: they never expire)."""
    bounds = [b for b in (limits.idle_timeout, limits.max_connection_age) if b is not None]
    return max(0.05, min(bounds) / 2) if bounds else None


class AsyncPool:
    """A task-safe pool of sessions to one server, for many concurrent sends.

    Create it with :meth:`mailsdk.AsyncClient.pool` and use it with ``async with``. Any number
    of tasks of one event loop may call :meth:`send_message` at once; each call gets a
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
        connection_limiter: a cap shared with other pools or processes, sync or async (the
            in-process cap of ``max_connections`` always holds too).
        clock: the monotonic clock (tests).
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        max_connections: int = 4,
        max_messages_per_connection: int | None = 1000,
        max_connection_age: float | None = 300.0,
        idle_timeout: float | None = 30.0,
        health_check_after: float = 1.0,
        checkout_timeout: float | None = 30.0,
        # unasync: drop AsyncConnectionLimiter
        connection_limiter: ConnectionLimiter | AsyncConnectionLimiter | None = None,
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
        self._book: PoolBook[AsyncSession] = PoolBook(self.limits)
        # unasync: add #: the caller's shared cap (``None``: only ``max_connections`` holds)
        # unasync: add self.connection_limiter = connection_limiter
        # unasync: async-only
        self._limiter: ConnectionLimiter | AsyncConnectionLimiter = (
            connection_limiter or LocalConnectionLimiter(max_connections)
        )
        # unasync: sync-only
        # self._limiter: ConnectionLimiter = connection_limiter or LocalConnectionLimiter(
        #     max_connections
        # )
        # unasync: end
        self._clock = clock
        self._cond = asyncio.Condition()
        # unasync: becomes self._reaper: threading.Thread | None = None
        self._reaper: asyncio.Task[None] | None = None
        # unasync: add self._closing = threading.Event()
        self.telemetry = PoolTelemetry(
            client.config.endpoint.describe(),
            self._counts,
            client.config.instrumentation,
            limit=lambda: self._book.concurrency.limit,
        )

    def __repr__(self) -> str:
        open_, idle, busy = self._counts()
        where = self.client.config.endpoint.describe()
        return f"<AsyncPool {where} open={open_} idle={idle} busy={busy}>"

    def _counts(self) -> tuple[int, int, int]:
        book = self._book
        return book.open, book.idle, book.busy

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
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

    async def throttled(self, epoch: int | None = None) -> None:
        """Record a throttling reply (421/451 4.7.x, 452 "too many", 4.3.2) to a send made in
        ``epoch`` (``None``: now): halve the connections in use, down to one. Replies to sends
        made before the last cut are ignored (they answer the same overload). Idle
        connections above the new limit are closed with QUIT, busy ones when given back."""
        async with self._cond:
            now = self._clock()
            surplus = self._book.throttled(self.epoch if epoch is None else epoch, now)
        for slot in surplus:
            await self._close_slot(slot, polite=True)

    async def relieved(self, epoch: int | None = None, count: int = 1) -> None:
        """Record ``count`` replies without throttling to sends made in ``epoch`` (``None``:
        now): after a cut the limit grows back by one connection per round of good replies."""
        book = self._book
        if not book.concurrency.reduced:
            return  # the common case: no lock taken per message
        async with self._cond:
            if book.succeeded(book.concurrency.epoch if epoch is None else epoch, count):
                self._cond.notify_all()

    # -- checkout ----------------------------------------------------------------------------

    async def _close_slot(self, slot: Slot[AsyncSession], *, polite: bool) -> None:
        session = slot.session
        try:
            if session is not None and not session.closed:
                if polite:
                    with contextlib.suppress(MailError):
                        await session.quit()
                await session.aclose()
        finally:
            if slot.lease is not None:
                with contextlib.suppress(Exception):
                    await maybe_await(self._limiter.release(slot.lease))

    async def checkout(self) -> Slot[AsyncSession]:
        """Take a connection for the calling task alone (opening one if allowed).

        Raises:
            PoolTimeout: none became free within ``checkout_timeout``.
            MailError: opening a new connection failed (connect, TLS, AUTH).
        """
        started = self._clock()
        limit = self.limits.checkout_timeout
        deadline = None if limit is None else started + limit
        while True:
            async with self._cond:
                if self._book.closed:
                    raise MailError("the pool is closed")
                decision, expired = self._book.checkout(self._clock())
                if not isinstance(decision, Reuse | Open):
                    remaining = None if deadline is None else deadline - self._clock()
                    if remaining is not None and remaining <= 0:
                        await self._expired(expired)
                        raise PoolTimeout(
                            f"no pooled connection became free within {limit}s", phase="checkout"
                        )
                    # unasync: async-only
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), remaining)
                    # unasync: sync-only
                    # self._cond.wait(remaining)
                    # unasync: end
            await self._expired(expired)
            if isinstance(decision, Reuse):
                slot = decision.slot
                if not await self._lease_alive(slot):  # a shared lease expired while it sat idle
                    await self._forget(slot, polite=True)
                    continue
                if decision.check and not await self._healthy(slot):
                    await self._forget(slot, polite=False)
                    continue
            elif isinstance(decision, Open):
                slot = decision.slot
                if not await self._open(slot, deadline):
                    continue
            else:
                continue
            self.telemetry.checked_out(self._clock() - started)
            return slot

    async def _expired(self, slots: Sequence[Slot[AsyncSession]]) -> None:
        for slot in slots:
            await self._close_slot(slot, polite=True)

    async def _lease_alive(self, slot: Slot[AsyncSession]) -> bool:
        if slot.lease is None:
            return True
        try:
            return bool(await maybe_await(self._limiter.renew(slot.lease)))
        except Exception:
            return False

    async def _healthy(self, slot: Slot[AsyncSession]) -> bool:
        session = slot.session
        if session is None or session.closed:
            return False
        try:
            await session.noop()
        except MailError:
            return False
        return True

    async def _forget(self, slot: Slot[AsyncSession], *, polite: bool) -> None:
        async with self._cond:
            self._book.discard(slot)
            self._cond.notify()
        await self._close_slot(slot, polite=polite)

    async def _open(self, slot: Slot[AsyncSession], deadline: float | None) -> bool:
        try:
            lease = await maybe_await(self._limiter.try_acquire())
        except BaseException:  # a shared limiter's store failing: the slot must not leak
            async with self._cond:
                self._book.discard(slot)
                self._cond.notify()
            raise
        if lease is None:  # the shared cap is reached: give the slot back and poll
            async with self._cond:
                self._book.discard(slot)
            if deadline is not None and self._clock() >= deadline:
                raise PoolTimeout("the shared connection limit stayed full", phase="checkout")
            await asyncio.sleep(_LEASE_POLL)
            return False
        try:
            session = await self.client.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                await maybe_await(self._limiter.release(lease))
            async with self._cond:
                self._book.discard(slot)
                self._cond.notify()
            raise
        async with self._cond:
            self._book.opened(slot, session, lease, self._clock())
            if self._reaper is None and _reap_interval(self.limits) is not None:
                # unasync: async-only
                self._reaper = asyncio.ensure_future(self._reap())
                # unasync: sync-only
                # self._reaper = threading.Thread(
                #     target=self._reap, name="mailsdk-pool-reaper", daemon=True
                # )
                # self._reaper.start()
                # unasync: end
        return True

    async def _reap(self) -> None:
        """Close idle connections past their idle timeout or age, even when nobody sends
        (they hold a slot of a shared connection cap, and the server will drop them anyway)."""
        interval = _reap_interval(self.limits)
        assert interval is not None
        # unasync: becomes while not self._closing.wait(interval):
        while True:
            await asyncio.sleep(interval)  # unasync: drop
            async with self._cond:
                if self._book.closed:
                    return
                expired = self._book.expire(self._clock())
                if expired:
                    self._cond.notify_all()
            await self._expired(expired)

    async def checkin(self, slot: Slot[AsyncSession], *, sent: int) -> None:
        """Give a connection back after ``sent`` messages; a broken or retired one is closed."""
        session = slot.session
        usable = session is not None and not session.closed
        if usable and not await self._lease_alive(slot):
            usable = False  # the shared lease expired: another process may use the slot now
        async with self._cond:
            keep = self._book.checkin(slot, self._clock(), sent=sent, usable=usable)
            self._cond.notify()
        if not keep:
            await self._close_slot(slot, polite=usable)

    def allowance(self, slot: Slot[AsyncSession]) -> int | None:
        """How many more messages the checked-out connection may send."""
        # unasync: async-only
        return self._book.allowance(slot)  # one event loop: no lock needed
        # unasync: sync-only
        # with self._cond:
        #     return self._book.allowance(slot)
        # unasync: end

    @contextlib.asynccontextmanager
    # unasync: becomes def connection(self) -> Generator[Session, None, None]:
    async def connection(self) -> AsyncGenerator[AsyncSession, None]:
        """``async with pool.connection() as session``: a session for this task alone.

        The session goes back to the pool at the end of the block; it is closed instead when it
        broke, or when the block ended with an exception that is not a :class:`MailError`.
        """
        slot = await self.checkout()
        session = slot.session
        assert session is not None
        try:
            yield session
        except BaseException as exc:
            if not isinstance(exc, MailError):
                # Interrupted mid-command (cancelled, Ctrl-C, a bug): the conversation may be
                # half-way through a transaction, so the session must never serve another caller.
                await asyncio.shield(session.aclose())
            raise
        finally:
            await self.checkin(slot, sent=1)

    # -- sending -----------------------------------------------------------------------------

    async def send_message(
        self,
        message: MessageLike,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | str | None = None,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptions | None = None,
    ) -> SendResult:
        """Send one message on a pooled connection (task-safe); same errors as
        :meth:`mailsdk.AsyncSession.send_message`, plus :class:`~mailsdk.errors.PoolTimeout`."""
        epoch = self.epoch
        async with self.connection() as session:
            try:
                result = await session.send_message(
                    message,
                    sender=sender,
                    recipients=recipients,
                    mail_options=mail_options,
                    rcpt_options=rcpt_options,
                )
            except MailError as exc:
                if throttling(exc):
                    await self.throttled(epoch)
                raise
        await self.relieved(epoch)
        return result

    def send_batch(
        self,
        items: Iterable[object],
        *,
        rate: RateLimiter | AsyncRateLimiter | None = None,  # unasync: drop AsyncRateLimiter
        retry: RetryPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        ordered: bool = False,
        # unasync: add processes: int | None = None,
        # unasync: becomes ) -> BatchRun | ProcessBatchRun:
    ) -> AsyncBatchRun:
        """Send many messages over the pool; iterate the result for one outcome per item.

        Args:
            items: :class:`~mailsdk.Outgoing` items or plain messages, read lazily.
            rate: a shared rate limit (e.g. :class:`~mailsdk.batch.TokenBucket`), sync or async.
            retry: the retry policy (``None``: :class:`~mailsdk.batch.RetryPolicy` defaults).
            on_progress: called with a :class:`~mailsdk.batch.Progress` after every outcome.
            ordered: yield outcomes in input order instead of completion order.

        Returns:
            The :class:`AsyncBatchRun`, an asynchronous iterator of
            :class:`~mailsdk.SendOutcome` with ``report``.
        """
        # unasync: sync-only
        # if processes is not None and (type(processes) is not int or processes != 1):
        #     return ProcessBatchRun(
        #         self,
        #         items,
        #         processes=processes,
        #         rate=rate,
        #         retry=retry,
        #         on_progress=on_progress,
        #         ordered=ordered,
        #     )
        # unasync: end
        return AsyncBatchRun(
            self, items, rate=rate, retry=retry, on_progress=on_progress, ordered=ordered
        )

    # -- lifetime ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """QUIT the idle connections; busy ones close when their caller gives them back."""
        # unasync: async-only
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        # unasync: sync-only
        # self._closing.set()
        # unasync: end
        async with self._cond:
            idle = [] if self._book.closed else self._book.close()
            self._cond.notify_all()
        for slot in idle:
            await self._close_slot(slot, polite=True)
        self.telemetry.shutdown()

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()
