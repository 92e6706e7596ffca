"""Running the express lane (:class:`~mailsdk.flows.express.ExpressRun`) over an asyncio stream.

Layer: L5 client (private). May import L0-L4. The blocking twin ``_sync_express.py`` is
generated from this file by ``scripts/unasync.py``.

The loop, per turn: answer what the run wants (the next item), write what it has encoded, hand
on the outcomes it has decided, then read and feed it the replies. A failed read or write (or a
failure the run itself raises: a reply out of step, a source that broke mid-content) gives the
connection up and lets the run account for every message; a cancellation with messages in
flight gives it up too, so that no stale reply is ever paired with a later command.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator

from mailsdk import errors
from mailsdk.client._async_driver import AsyncDriver  # unasync: drop
from mailsdk.client._express import PULLS, LaneClock
from mailsdk.client._policy import claim
from mailsdk.client._pump import RECEIVE_SIZE
from mailsdk.client._sending import Feed

# unasync: add from mailsdk.client._sync_driver import SyncDriver
from mailsdk.flows import SendOutcome
from mailsdk.flows.express import ExpressRun

__all__ = ["run_express"]


async def run_express(
    driver: AsyncDriver,
    lane: ExpressRun,
    feed: Feed,
) -> AsyncGenerator[SendOutcome, None]:
    """Run ``lane`` on ``driver``'s connection, yielding each outcome as it is decided."""
    claim(driver)
    pump = driver.pump
    lane_clock = LaneClock(lane, pump.timeouts)
    ready = lane.ready
    # unasync: drop
    flush_first = feed.asynchronous  # written before waiting on a source that may be slow
    try:
        while True:
            try:
                if ready:
                    # Handed on before the next item is pulled: a source that waits on the
                    # outcomes it has seen (or a slow one) must not hold back those decided.
                    # unasync: async-only
                    for outcome in ready:
                        yield outcome
                    # unasync: end
                    # unasync: sync-only
                    # yield from ready
                    # unasync: end
                    ready.clear()
                    continue
                if lane.want:
                    # unasync: async-only
                    if flush_first and (block := lane.take_output()) is not None:
                        await _write(driver, lane_clock, block)
                    # unasync: end
                    # unasync: becomes lane.offer(feed.pull(PULLS[lane.want]))
                    lane.offer(await feed.apull(PULLS[lane.want]))
                    continue
                block = lane.take_output()
                if block is not None:
                    await _write(driver, lane_clock, block)
                    continue
                if lane.finished:
                    break
                stream = driver.stream
                try:
                    data = await stream.receive(RECEIVE_SIZE, lane_clock.remaining())
                except errors.ReadTimeout as exc:  # the transport's own says "read"
                    raise lane_clock.read_timed_out() from exc
                lane.receive(data)
            except errors.MailError as exc:
                if lane.broken is not None:
                    raise  # pragma: no cover - lost() decides everything; nothing raises after
                pump.connection.send_failed()
                await driver.aclose()
                lane.lost(exc)
    except BaseException:
        if not driver.closed and (lane.closing or not lane.idle):
            # A cancellation (or the caller stopping) with replies owed: given up; after a
            # 421 the server is closing the channel whether or not anything is owed.
            pump.connection.send_failed()
            await driver.aclose()
        raise
    finally:
        driver.busy = False
        pump.connection.parser_returned(closing=lane.closing)
    if lane.closing and not driver.closed:
        await driver.aclose()  # RFC 5321 §3.8: the server is closing the channel


async def _write(driver: AsyncDriver, lane_clock: LaneClock, block: bytes) -> None:
    stream = driver.stream
    sys.audit("mailsdk.send", stream, block)  # smtplib.send's shape: (self, data)
    timeouts = lane_clock.timeouts
    try:
        await stream.send_all(block, timeouts.for_write(len(block)), stall=timeouts.command)
    except errors.WriteTimeout as exc:
        raise lane_clock.write_timed_out(exc) from exc
    lane_clock.wrote()
