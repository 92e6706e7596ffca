# Generated from src/mailsdk/client/_async_express.py by scripts/unasync.py: do not edit.
# Edit the asyncio original, then run `python scripts/unasync.py` (docs/architecture.md).
"""Running the express lane (:class:`~mailsdk.flows.express.ExpressRun`) over a blocking stream.

Layer: L5 client (private). May import L0-L4. This file is
generated from ``_async_express.py`` by ``scripts/unasync.py``.

The loop, per turn: answer what the run wants (the next item), write what it has encoded, hand
on the outcomes it has decided, then read and feed it the replies. A failed read or write (or a
failure the run itself raises: a reply out of step, a source that broke mid-content) gives the
connection up and lets the run account for every message; a cancellation with messages in
flight gives it up too, so that no stale reply is ever paired with a later command.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Generator

from mailsdk import errors
from mailsdk.client._express import PULLS, LaneClock, OneItem, Source
from mailsdk.client._policy import claim
from mailsdk.client._pump import RECEIVE_SIZE
from mailsdk.client._sync_driver import SyncDriver
from mailsdk.flows import Delivery, SendOutcome
from mailsdk.flows.express import ExpressRun, Want

__all__ = ["run_express", "send_one"]

_NOTHING: typing.Final = object()


def run_express(
    driver: SyncDriver,
    lane: ExpressRun,
    feed: Source,
) -> Generator[SendOutcome, None]:
    """Run ``lane`` on ``driver``'s connection, yielding each outcome as it is decided."""
    claim(driver)
    pump = driver.pump
    lane_clock = LaneClock(lane, pump.timeouts)
    spare: object = _NOTHING  # an item pulled ahead (``None``: the input is exhausted)
    try:
        while True:
            try:
                if lane.ready and (lane.idle or (lane.want and spare is _NOTHING)):
                    # Handed on before the next item is pulled (as deliver_many does): a source
                    # that waits on the outcomes it has seen must not wait on these, and a
                    # caller stopping here with nothing owed leaves the session in step. (An
                    # item pulled ahead is written first: the outcomes are built after it.)
                    yield from lane.take_ready()
                    continue
                if lane.want:
                    if spare is not _NOTHING:
                        # Taken before it is offered: an offer that fails (bytes the server
                        # sent unasked) has the item FAILED, never offered a second time.
                        item, spare = spare, _NOTHING
                        lane.offer(item)
                        continue
                    lane.offer(feed.pull(PULLS[lane.want]))  # a plain iterable: called directly
                    continue
                block = lane.take_output()
                if block is not None:
                    _write(driver, lane_clock, block)
                    if lane.takes_more:
                        continue  # more to take before any reply is read
                if lane.ready:
                    # Written (or nothing to write): hand on what is decided, then read. The
                    # caller's turn changes nothing in the run, so no second pass is needed.
                    yield from lane.take_ready()
                if lane.finished:
                    break
                # The next item is pulled and prepared while the server works on what was just
                # written, not after its replies (one item ahead, never more).
                if spare is _NOTHING and lane.will_want:
                    spare = feed.pull(PULLS[Want.ITEM])
                stream = driver.stream
                try:
                    data = stream.receive(RECEIVE_SIZE, lane_clock.remaining())
                except errors.ReadTimeout as exc:  # the transport's own says "read"
                    raise lane_clock.read_timed_out() from exc
                lane.receive(data)
            except errors.MailError as exc:
                if lane.broken is not None:
                    raise  # pragma: no cover - lost() decides everything; nothing raises after
                pump.connection.send_failed()
                driver.close()
                lane.lost(exc)
    except BaseException:
        if not driver.closed and (lane.closing or not lane.idle):
            # A cancellation (or the caller stopping) with replies owed: given up; after a
            # 421 the server is closing the channel whether or not anything is owed.
            pump.connection.send_failed()
            driver.close()
        raise
    finally:
        driver.busy = False
        pump.connection.parser_returned(closing=lane.closing)
    if lane.closing and not driver.closed:
        driver.close()  # RFC 5321 §3.8: the server is closing the channel


def _write(driver: SyncDriver, lane_clock: LaneClock, block: bytes) -> None:
    stream = driver.stream
    sys.audit("mailsdk.send", stream, block)  # smtplib.send's shape: (self, data)
    timeouts = lane_clock.timeouts
    try:
        stream.send_all(block, timeouts.for_write(len(block)), stall=timeouts.command)
    except errors.WriteTimeout as exc:
        raise lane_clock.write_timed_out(exc) from exc
    lane_clock.waiting = False  # the reply deadline starts at the next wait


def send_one(driver: SyncDriver, lane: ExpressRun, item: Delivery) -> SendOutcome:
    """Run ``lane`` for one message (``send_message``) and return its outcome."""
    express = run_express(driver, lane, OneItem(item))
    outcomes: list[SendOutcome] = []
    try:
        for outcome in express:
            outcomes.append(outcome)
    finally:
        express.close()
    if len(outcomes) != 1:
        raise errors.LocalProtocolError(f"one message got {len(outcomes)} outcomes")
    return outcomes[0]
