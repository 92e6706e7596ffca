"""The asyncio connection pool: :class:`AsyncPool`.

Layer: L5c (pool). The same :class:`~mailsdk.pool._book.PoolBook` decisions as the blocking
pool; the I/O (connect, NOOP, QUIT) is awaited outside the condition's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import types
import typing
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence

from mailsdk._types import MessageLike
from mailsdk.batch.limits import (
    AsyncConnectionLimiter,
    AsyncRateLimiter,
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
from mailsdk.pool._async_batch import AsyncBatchRun
from mailsdk.pool._book import Open, PoolBook, PoolLimits, Reuse, Slot
from mailsdk.pool._telemetry import PoolTelemetry
from mailsdk.pool._work import throttling
from mailsdk.pool.sync_pool import _reap_interval  # pyright: ignore[reportPrivateUsage]

__all__ = ["AsyncPool", "maybe_await"]

_LEASE_POLL: float = 0.05
T = typing.TypeVar("T")


async def maybe_await(value: T | typing.Awaitable[T]) -> T:
    """The value, awaited when a limiter returned an awaitable (sync and async limiters)."""
    if inspect.isawaitable(value):
        return await value
    return value


class AsyncPool:
    """A task-safe pool of sessions to one server (see :class:`mailsdk.pool.Pool`).

    Create it with :meth:`mailsdk.AsyncClient.pool` and use it with ``async with``. Any number
    of tasks of one event loop may call :meth:`send_message` at once.

    Args:
        client: the client whose configuration every connection uses.
        max_connections, max_messages_per_connection, max_connection_age, idle_timeout,
        health_check_after, checkout_timeout: as for :class:`mailsdk.pool.Pool`.
        connection_limiter: a shared cap, sync or async (its results are awaited when needed).
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
        self._limiter: ConnectionLimiter | AsyncConnectionLimiter = (
            connection_limiter or LocalConnectionLimiter(max_connections)
        )
        self._clock = clock
        self._cond = asyncio.Condition()
        self._reaper: asyncio.Task[None] | None = None
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

    async def throttled(self) -> None:
        """Record a throttling reply (421/451 4.7.x, 452 "too many", 4.3.2): halve the
        connections in use, at most once a second, down to one; idle connections above the new
        limit are closed with QUIT, busy ones when they are given back."""
        async with self._cond:
            surplus = self._book.throttled(self._clock())
        for slot in surplus:
            await self._close_slot(slot, polite=True)

    async def relieved(self, count: int = 1) -> None:
        """Record ``count`` messages the server took without throttling: after a cut the
        limit grows back by one connection per round of good replies."""
        if not self._book.concurrency.reduced:
            return  # the common case: no lock taken per message
        async with self._cond:
            if self._book.succeeded(self._clock(), count):
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
            MailError: opening a new connection failed.
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
                        for slot in expired:
                            await self._close_slot(slot, polite=True)
                        raise PoolTimeout(
                            f"no pooled connection became free within {limit}s", phase="checkout"
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), remaining)
            for slot in expired:
                await self._close_slot(slot, polite=True)
            if isinstance(decision, Reuse):
                slot = decision.slot
                if not await self._lease_alive(slot):  # a shared lease expired while idle
                    await self._forget(slot)
                    continue
                if decision.check and not await self._healthy(slot):
                    await self._forget(slot)
                    continue
            elif isinstance(decision, Open):
                slot = decision.slot
                if not await self._open(slot, deadline):
                    continue
            else:
                continue
            self.telemetry.checked_out(self._clock() - started)
            return slot

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

    async def _forget(self, slot: Slot[AsyncSession]) -> None:
        async with self._cond:
            self._book.discard(slot)
            self._cond.notify()
        await self._close_slot(slot, polite=False)

    async def _open(self, slot: Slot[AsyncSession], deadline: float | None) -> bool:
        try:
            lease = await maybe_await(self._limiter.try_acquire())
        except BaseException:
            async with self._cond:
                self._book.discard(slot)
                self._cond.notify()
            raise
        if lease is None:
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
                self._reaper = asyncio.ensure_future(self._reap())
        return True

    async def _reap(self) -> None:
        """Close idle connections past their idle timeout or age, even when nobody sends."""
        interval = _reap_interval(self.limits)
        assert interval is not None
        while True:
            await asyncio.sleep(interval)
            async with self._cond:
                if self._book.closed:
                    return
                expired = self._book.expire(self._clock())
                if expired:
                    self._cond.notify_all()
            for slot in expired:
                await self._close_slot(slot, polite=True)

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
        return self._book.allowance(slot)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncGenerator[AsyncSession, None]:
        """``async with pool.connection() as session``: a session for this task alone."""
        slot = await self.checkout()
        session = slot.session
        assert session is not None
        try:
            yield session
        except BaseException as exc:
            if not isinstance(exc, MailError):
                # Cancelled mid-command: the session must never serve another task.
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
                    await self.throttled()
                raise
        await self.relieved()
        return result

    def send_batch(
        self,
        items: Iterable[object],
        *,
        rate: RateLimiter | AsyncRateLimiter | None = None,
        retry: RetryPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        ordered: bool = False,
    ) -> AsyncBatchRun:
        """Send many messages over the pool; ``async for`` the result (see
        :meth:`mailsdk.pool.Pool.send_batch`). ``rate`` may be a sync or an async limiter."""
        return AsyncBatchRun(
            self, items, rate=rate, retry=retry, on_progress=on_progress, ordered=ordered
        )

    # -- lifetime ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """QUIT the idle connections; busy ones close when their task gives them back."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
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
