"""The asyncio engine of a ``send_batch(processes=N)`` worker, and when it may run.

Layer: L5c (pool, private). :mod:`mailsdk.pool._process_worker` runs one of two engines over
the items its parent hands out: this one, an :class:`~mailsdk.pool.AsyncPool` and its batch on
an event loop of the worker's own (one thread sends on every connection), or the threaded
:class:`~mailsdk.pool.Pool` and batch (one thread per connection). The asyncio engine is the
faster one: in one process, the threads of a pool spend much of their CPU handing the
interpreter lock to each other, which an event loop does not do.

The parent decides which engine its workers run (:func:`threads_needed`), before it forks: the
asyncio engine builds an :class:`~mailsdk.AsyncClient` from the pool's configuration, so it
runs only where that client does exactly what the blocking one would.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable, Iterable

from mailsdk.batch.bucket import TokenBucket
from mailsdk.batch.limits import ConnectionLimiter, LocalConnectionLimiter, RateLimiter
from mailsdk.client import AsyncClient, Client, LMTPClient
from mailsdk.flows import SendOutcome

if typing.TYPE_CHECKING:
    from mailsdk.batch.retry import RetryPolicy
    from mailsdk.pool._async_batch import AsyncBatchRun
    from mailsdk.pool.sync_pool import Pool

__all__ = ["Forwarder", "send_on_loop", "threads_needed"]


class Forwarder(typing.Protocol):
    """Where a worker's engine hands its batch and each outcome (see ``_process_worker``)."""

    def started(self, run: AsyncBatchRun, stop: Callable[[], None]) -> None:
        """The batch is running: its report is what a crash forwards, and ``stop`` (callable
        from any thread) stops it when the parent stops the worker."""

    def forward(self, outcome: SendOutcome) -> None:
        """One outcome the batch yielded, on its way to the parent."""


def threads_needed(pool: Pool, rate: RateLimiter | None) -> str | None:
    """Why the workers of ``pool.send_batch(processes=N, rate=rate)`` must run the threaded
    engine, or ``None`` when they run the asyncio one.

    The asyncio client is built from the pool's configuration, so anything that is not part of
    it, or that the asyncio client would run differently, keeps the threads:

    * a subclass of :class:`~mailsdk.Client` or of :class:`~mailsdk.pool.Pool`: it may change
      how connections are made or messages sent, and the asyncio twin would not;
    * a custom ``ClientConfig.connector``: the pool's is a blocking one, and the asyncio client
      needs an :class:`~mailsdk.transport.AsyncConnector`;
    * a supplied socket (``Endpoint.sock``): a blocking socket the caller owns;
    * a rate or connection limiter other than mailsdk's in-process ones (a
      :class:`~mailsdk.batch.TokenBucket`, a :class:`~mailsdk.batch.LocalConnectionLimiter`):
      a shared one (Redis) does network I/O in every call, which each connection's thread
      waits for on its own, but which would stop the whole event loop, every connection of the
      worker, for each message.

    A blocking token provider is no reason: the asyncio client calls it in a thread, once per
    connection, bounded by the command timeout.
    """
    if type(pool.client) not in (Client, LMTPClient):
        return f"the client is a {type(pool.client).__name__}, not mailsdk's Client"
    from mailsdk.pool.sync_pool import Pool

    if type(pool) is not Pool:
        return f"the pool is a {type(pool).__name__}, not mailsdk's Pool"
    config = pool.client.config
    if config.connector is not None:
        return "the client has a custom (blocking) connector"
    if config.endpoint.sock is not None:
        return "the client connects over a supplied socket"
    if rate is not None and type(rate) is not TokenBucket:
        return f"the rate limiter is a {type(rate).__name__}, which may block the event loop"
    cap = pool.connection_limiter
    if cap is not None and type(cap) is not LocalConnectionLimiter:
        return f"the connection limiter is a {type(cap).__name__}, which may block the event loop"
    return None


def send_on_loop(
    pool: Pool,
    *,
    connections: int,
    cap: ConnectionLimiter | None,
    items: Iterable[object],
    rate: RateLimiter,
    retry: RetryPolicy | None,
    forwarder: Forwarder,
) -> None:
    """Send ``items`` over an :class:`~mailsdk.pool.AsyncPool` with ``pool``'s configuration
    and limits (``connections`` of them, capped by ``cap``), on a new event loop.

    Raises what the batch raises (as :meth:`~mailsdk.pool.AsyncBatchRun.__anext__` does).
    """
    loop = asyncio.new_event_loop()
    try:
        sending = _send(
            pool,
            connections=connections,
            cap=cap,
            items=items,
            rate=rate,
            retry=retry,
            forwarder=forwarder,
        )
        loop.run_until_complete(sending)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            # Not asyncio.run(): it waits for the default executor's threads, and a token
            # provider's thread that the command deadline abandoned would hold this worker,
            # and the parent's batch with it, for as long as the provider hangs.
            loop.close()


async def _send(
    pool: Pool,
    *,
    connections: int,
    cap: ConnectionLimiter | None,
    items: Iterable[object],
    rate: RateLimiter,
    retry: RetryPolicy | None,
    forwarder: Forwarder,
) -> None:
    from mailsdk.pool.async_pool import AsyncPool

    limits = pool.limits
    mine = AsyncPool(
        AsyncClient(pool.client.config),  # an LMTPClient's config says LMTP already
        max_connections=connections,
        max_messages_per_connection=limits.max_messages_per_connection,
        max_connection_age=limits.max_connection_age,
        idle_timeout=limits.idle_timeout,
        health_check_after=limits.health_check_after,
        checkout_timeout=limits.checkout_timeout,
        connection_limiter=cap,
    )
    async with mine:
        run = mine.send_batch(items, rate=rate, retry=retry)
        # The parent's stop cancels the batch's consumer (this task), as a Ctrl-C cancels an
        # in-process one: the queued retries end FAILED (never sent), and the connections get
        # the parent's patience (see ProcessBatchRun._stop) to finish what they are sending.
        run.cancel_grace = (pool.client.config.timeouts.command or 60.0) * 3
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
        assert task is not None
        state = {"running": True, "stopped": False}

        def cancel() -> None:  # on the loop: only the batch, never the pool's QUITs after it
            if state["running"]:
                state["stopped"] = True
                task.cancel()

        def stop() -> None:  # from the feed's reader thread
            loop.call_soon_threadsafe(cancel)

        forwarder.started(run, stop)
        try:
            async with run:
                async for outcome in run:
                    forwarder.forward(outcome)
        except asyncio.CancelledError:
            if not state["stopped"]:
                raise
            task.uncancel()  # stopped by the parent: the outcomes are in the report
        finally:
            state["running"] = False


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks a failed batch left behind, and let them finish (as asyncio.run)."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
