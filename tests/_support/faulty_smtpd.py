"""A fault-injecting aiosmtpd server for pool and batch tests.

Not collected. Each message's recipients are ``m<index>-<n>@x.test``; :class:`Faults` names,
per message index, the fault played on that message's *first* try only (later tries succeed),
so a test knows exactly which outcome each message must end with:

* ``rcpt4xx``: every RCPT gets ``451 4.3.0``; ``rcpt_one4xx``: only the first recipient does;
* ``data421``: the end-of-data reply is ``421 4.7.0`` and the connection closes (throttling);
* ``drop_before``: the connection drops at RCPT (nothing was handed over);
* ``drop_after``: the message is received, then the connection drops without a reply
  (the server *has* it: the client must report UNKNOWN and never resend);
* ``silent``: the message is received and no reply comes until the client gives up;
* ``slow``: the end-of-data reply comes after a pause;
* ``double_reply``: the message is accepted, then a second, unsolicited 250 follows (a lying
  server: nothing after it may be trusted);
* ``silent_rcpt``: no reply to RCPT until the client gives up (nothing handed over);
* ``garbage_after``: the message is received, then a malformed line comes instead of the
  reply (the server lies: the client must report UNKNOWN);
* ``perm``: ``550 5.1.1`` for every recipient (never retried);
* ``rcpt_limit``: at most two recipients per transaction, ``452 4.5.3`` for the others (on
  every try).

Handler options beyond the faults: ``ehlo_delay`` (seconds before the EHLO reply: a slow
connection set-up), ``max_concurrent`` (RCPT on a connection beyond that many open ones gets
``451 4.7.0`` "too many connections": a server limiting concurrency, counted in
:attr:`FaultyHandler.throttled`); :attr:`FaultyHandler.stamps` holds the server's receive time
(``time.monotonic()``) of every message it took.

:attr:`FaultyHandler.kept_rcpt` counts, per recipient, the deliveries the server took
responsibility for (250 replies plus received-then-dropped ones): each must be at most 1.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
import time
import typing

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

__all__ = ["FaultyHandler", "FaultyServer", "recipients_for", "start_faulty"]

_INDEX = re.compile(r"^m(\d+)-")


def recipients_for(index: int, count: int = 1) -> tuple[str, ...]:
    """The recipients of message ``index`` (the server reads the index from them)."""
    return tuple(f"m{index}-{n}@x.test" for n in range(count))


def _index(address: str) -> int:
    m = _INDEX.match(address)
    return int(m.group(1)) if m else -1


class FaultyHandler:
    """See the module docstring. ``faults`` maps a message index to a fault name."""

    def __init__(
        self,
        faults: dict[int, str],
        silent_for: float = 2.0,
        slow_for: float = 0.05,
        ehlo_delay: float = 0.0,
        max_concurrent: int | None = None,
    ):
        self.faults = dict(faults)
        self.ehlo_delay = ehlo_delay
        self.max_concurrent = max_concurrent
        self.throttled = 0
        #: the server's receive time of every message it took (time.monotonic()).
        self.stamps: list[float] = []
        self.silent_for = silent_for
        self.slow_for = slow_for
        self.lock = threading.Lock()
        self.tries: collections.Counter[int] = collections.Counter()
        self.kept: collections.Counter[int] = collections.Counter()
        #: per recipient: deliveries the server took responsibility for (each must be <= 1).
        self.kept_rcpt: collections.Counter[str] = collections.Counter()
        self.rcpt_seen: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.servers: list[SMTP] = []

    def drop_all(self) -> None:
        """Close every connection from the server side (an MTA expiring idle clients)."""
        with self.lock:
            servers, self.servers = self.servers, []
        for server in servers:
            server.loop.call_soon_threadsafe(server.transport.close)

    def _begin(self, envelope: typing.Any, index: int) -> str | None:
        """The fault of this transaction, decided at its first RCPT (first try only)."""
        if not hasattr(envelope, "fault"):
            with self.lock:
                first = self.tries[index] == 0
                self.tries[index] += 1
            fault = self.faults.get(index)
            envelope.fault = fault if first or fault == "rcpt_limit" else None
        fault: str | None = envelope.fault
        return fault

    def _keep(self, index: int, envelope: typing.Any) -> None:
        with self.lock:
            self.stamps.append(time.monotonic())
            self.kept[index] += 1
            for rcpt in envelope.rcpt_tos:
                self.kept_rcpt[rcpt] += 1

    async def handle_EHLO(
        self, server: SMTP, session: typing.Any, envelope: typing.Any, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        session.host_name = hostname
        if self.ehlo_delay:
            await asyncio.sleep(self.ehlo_delay)
        with self.lock:
            self.connections += 1
            self.servers.append(server)
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: SMTP, session: typing.Any, envelope: typing.Any, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        index = _index(address)
        fault = self._begin(envelope, index)
        with self.lock:
            self.rcpt_seen[address] += 1
            crowded = self.max_concurrent is not None and self.open > self.max_concurrent
            if crowded:
                self.throttled += 1
        if crowded:
            return "451 4.7.0 too many connections, slow down"
        if fault == "drop_before":
            server.transport.close()
            return "451 4.3.0 dropping"
        if fault == "silent_rcpt":
            await asyncio.sleep(self.silent_for)
            server.transport.close()
            return "250 2.1.5 too late"
        if fault == "rcpt_limit" and len(envelope.rcpt_tos) >= 2:  # every try, not just the first
            return "452 4.5.3 Too many recipients"
        if fault == "perm":
            return f"550 5.1.1 <{address}> unknown"
        if fault == "rcpt4xx" or (fault == "rcpt_one4xx" and address.endswith("-0@x.test")):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: typing.Any, envelope: typing.Any) -> str:
        indexes = {_index(a) for a in envelope.rcpt_tos}
        index = min(indexes) if indexes else -1
        fault = getattr(envelope, "fault", None)
        if fault == "data421":
            await server.push("421 4.7.0 too busy, closing the connection")
            server.transport.close()
            return "421 4.7.0 closed"
        if fault == "drop_after":
            self._keep(index, envelope)
            server.transport.close()
            return "250 2.0.0 never seen by the client"
        if fault == "silent":
            self._keep(index, envelope)
            await asyncio.sleep(self.silent_for)
            server.transport.close()
            return "250 2.0.0 too late"
        if fault == "garbage_after":
            self._keep(index, envelope)
            server.transport.write(b"2x0 what?\r\n")
            server.transport.close()
            return "250 2.0.0 hidden"
        if fault == "double_reply":  # a lying server: one extra 250 after the real one
            self._keep(index, envelope)
            await server.push(f"250 2.0.0 OK: queued as Q{index}")
            return "250 2.0.0 and once more"
        if fault == "slow":
            await asyncio.sleep(self.slow_for)
        self._keep(index, envelope)
        return f"250 2.0.0 OK: queued as Q{index}"


class FaultyServer:
    """A running fault-injecting server."""

    def __init__(self, handler: FaultyHandler, controller: Controller) -> None:
        self.handler = handler
        self.controller = controller
        self.host = "127.0.0.1"
        self.port = int(controller.port)

    def stop(self) -> None:
        """Stop the server thread."""
        self.controller.stop()


class _CountingSMTP(SMTP):
    """Counts the connections open at once (``FaultyHandler.max_open``)."""

    def connection_made(self, transport: typing.Any) -> None:
        handler: FaultyHandler = self.event_handler
        with handler.lock:
            handler.open += 1
            handler.max_open = max(handler.max_open, handler.open)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        handler: FaultyHandler = self.event_handler
        with handler.lock:
            handler.open -= 1
        super().connection_lost(exc)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


def start_faulty(faults: dict[int, str], **handler_options: typing.Any) -> FaultyServer:
    """Start a fault-injecting server on 127.0.0.1 (see the module docstring)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = FaultyHandler(faults, **handler_options)
    controller = _Controller(
        handler, hostname="127.0.0.1", port=port, ready_timeout=5.0,
        server_hostname="mx.test", decode_data=False, timeout=30,
    )  # fmt: skip
    controller.start()
    with handler.lock:
        handler.connections = 0
        handler.max_open = handler.open
    return FaultyServer(handler, controller)
