"""The asyncio driver: runs a flow on an :class:`~mailsdk.transport.AsyncStream`.

Layer: L5 client (private). May import L0-L4. This and ``_sync_driver.py`` are the only code
written twice; what they decide is in ``_pump.Pump`` (bytes and replies), ``Pump.verdict``
(what a failure leaves of the session) and the flows.
"""

from __future__ import annotations

import ssl
import sys
import typing
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

from mailsdk import errors, flows
from mailsdk.client._policy import Verdict, claim
from mailsdk.client._pump import RECEIVE_SIZE, Pump
from mailsdk.client._setup import tls_info_of
from mailsdk.client._tokens import aobtain_token
from mailsdk.transport import AsyncStream

__all__ = ["AsyncDriver"]

T = typing.TypeVar("T")


class AsyncDriver:
    """Performs the actions a flow yields, over an asyncio stream."""

    def __init__(
        self,
        stream: AsyncStream,
        pump: Pump,
        *,
        tls_context: ssl.SSLContext | None,
        server_hostname: str | None,
        token_provider: object | None,
    ) -> None:
        self.stream = stream
        self.pump = pump
        #: The context for STARTTLS; a session may set it later (``Session.starttls``).
        self.tls_context = tls_context
        self._server_hostname = server_hostname
        #: Where ``ObtainToken`` actions get tokens; ``Session.authenticate`` may replace it.
        self.token_provider = token_provider
        self.closed = False
        self.busy = False

    async def run(self, flow: Generator[flows.Action, object, T]) -> T:
        """Run ``flow`` to completion and return its value (``Report`` values are dropped).

        Raises:
            MailError: whatever the flow or the I/O raised (an I/O failure is thrown into the
                flow first); ``Pump.verdict`` decides what it leaves of the session.
        """
        box: list[T] = []
        async for _ in self.steps(flow, box):
            pass
        return box[0]

    async def steps(
        self,
        flow: Generator[flows.Action, object, T],
        box: list[T],
        pull: Callable[[flows.Pull], Awaitable[object]] | None = None,
        flush_before_pull: bool = False,
    ) -> AsyncGenerator[object, None]:
        """Run ``flow``, yielding each ``Report``'s value; its value goes into ``box``. ``pull``
        performs ``Pull`` (after writing what is buffered, with ``flush_before_pull``)."""
        claim(self)
        result: object = None
        failure: errors.MailError | None = None
        try:
            while True:
                try:
                    action = flow.send(result) if failure is None else flow.throw(failure)
                except StopIteration as stop:
                    await self._flush()
                    await self._settle(None)
                    box.append(typing.cast("T", stop.value))
                    return
                result, failure = None, None
                if isinstance(action, flows.Report):
                    await self._flush()
                    yield action.value
                    continue
                try:
                    if pull and isinstance(action, flows.Pull):
                        if flush_before_pull:
                            await self._flush()
                        result = await pull(action)
                    else:
                        result = await self._perform(action)
                except errors.MailError as exc:
                    # The flow sees the failure, so that a best-effort step (an RSET after a
                    # refusal) cannot mask the error that triggered it; a broken connection
                    # is given up first.
                    if self.pump.verdict(exc) is Verdict.GIVE_UP:
                        await self.give_up(exc)
                    failure = exc
        except BaseException as exc:
            await self._settle(exc)
            raise
        finally:
            self.busy = False
            flow.close()

    async def _settle(self, error: BaseException | None) -> None:
        verdict = self.pump.verdict(error)
        if verdict is Verdict.CLOSE:
            await self.aclose()
        elif verdict is Verdict.GIVE_UP:
            await self.give_up(typing.cast("BaseException", error))

    async def give_up(self, error: BaseException) -> None:
        self.pump.fail(error)
        await self.aclose()

    async def _write(self, block: bytes) -> None:
        sys.audit("mailsdk.send", self.stream, block)  # smtplib.send's shape: (self, data)
        pump = self.pump
        try:
            await self.stream.send_all(
                block, pump.write_timeout(len(block)), stall=pump.stall_timeout
            )
        except errors.WriteTimeout as exc:
            raise pump.write_timed_out(exc) from exc

    async def _read(self) -> None:
        try:
            data = await self.stream.receive(RECEIVE_SIZE, self.pump.remaining())
        except errors.ReadTimeout as exc:  # the transport's own says "read": name the phase
            raise self.pump.read_timed_out() from exc
        self.pump.feed(data)

    async def _flush(self) -> None:
        if self.pump.buffered and not self.closed:
            await self._write(self.pump.take())

    async def _perform(self, action: flows.Action) -> object:
        if self.closed and not isinstance(action, flows.Close):
            raise errors.ConnectionLost("the connection was closed")
        if isinstance(action, flows.Exchange):
            for block in self.pump.encode(action):
                await self._write(block)
            if action.replies == 0:
                return ()
            while (events := self.pump.poll()) is None:
                await self._read()
            return events
        await self._flush()
        match action:
            case flows.AwaitGreeting():
                self.pump.greeting()
                while (greeting := self.pump.poll_greeting()) is None:
                    await self._read()
                return greeting
            case flows.StartTls():
                return await self._start_tls()
            case flows.ObtainToken(force_refresh):
                return await aobtain_token(
                    self.token_provider,
                    force_refresh=force_refresh,
                    deadline=self.pump.timeouts.command,
                )
            case flows.Close():
                await self.aclose()
                return None
            case flows.Pull() | flows.Report():  # Report: handled by steps
                return None
        typing.assert_never(action)

    async def _start_tls(self) -> flows.TlsInfo:
        if self.tls_context is None:
            raise errors.TLSError("STARTTLS needs a TLS context")
        self.stream = await self.stream.start_tls(
            self.tls_context, self._server_hostname, self.pump.timeouts.tls
        )
        self.pump.connection.tls_started()
        info = self.tls_info()
        if info is None:  # pragma: no cover - start_tls always returns a TLS stream
            raise errors.TLSError("the stream is not encrypted after STARTTLS")
        return info

    def tls_info(self) -> flows.TlsInfo | None:
        """The TLS details of the current stream, or ``None`` when it is plaintext."""
        return tls_info_of(self.stream)

    async def aclose(self) -> None:
        """Close the stream (idempotent)."""
        if not self.closed:
            self.closed = True
            await self.stream.aclose()
