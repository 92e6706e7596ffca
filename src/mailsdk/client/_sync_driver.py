"""The blocking driver: runs a flow on a :class:`~mailsdk.transport.Stream`.

Layer: L5 client (private). May import L0-L4. This and ``_async_driver.py`` are the only code
written twice; what they decide is in ``_pump.Pump`` (bytes and replies), ``Pump.verdict``
(what a failure leaves of the session) and the flows.
"""

from __future__ import annotations

import ssl
import sys
import typing
from collections.abc import Callable, Generator

from mailsdk import errors, flows
from mailsdk.client._policy import Verdict, claim
from mailsdk.client._pump import RECEIVE_SIZE, Pump
from mailsdk.client._setup import tls_info_of
from mailsdk.client._tokens import obtain_token
from mailsdk.protocol.events import CommandReplied
from mailsdk.transport import Stream

__all__ = ["SyncDriver"]

T = typing.TypeVar("T")


class SyncDriver:
    """Performs the actions a flow yields, over a blocking stream."""

    def __init__(
        self,
        stream: Stream,
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

    def run(self, flow: Generator[flows.Action, object, T]) -> T:
        """Run ``flow`` to completion and return its value (``Report`` values are dropped).

        Raises:
            MailError: whatever the flow or the I/O raised (an I/O failure is thrown into the
                flow first); ``Pump.verdict`` decides what it leaves of the session.
        """
        steps = self.steps(flow)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]  # the flow's own T

    def steps(
        self,
        flow: Generator[flows.Action, object, T],
        pull: Callable[[flows.Pull], object] | None = None,
    ) -> Generator[object, None, T]:
        """Run ``flow``, yielding each ``Report``'s value; ``pull`` performs ``Pull``."""
        claim(self)
        result: object = None
        failure: errors.MailError | None = None
        send = flow.send
        try:
            while True:
                try:
                    action = send(result) if failure is None else flow.throw(failure)
                except StopIteration as stop:
                    self._flush()
                    self._settle(None)
                    return stop.value  # type: ignore[no-any-return]  # the flow's own T
                result, failure = None, None
                # Actions are final attrs classes: dispatch on the exact type, most common first.
                kind = type(action)
                if kind is flows.Report:
                    self._flush()
                    yield action.value  # type: ignore[union-attr]
                    continue
                try:
                    if kind is flows.Exchange:
                        result = self._exchange(action)  # type: ignore[arg-type]
                    elif kind is flows.Pull and pull is not None:
                        result = pull(action)  # type: ignore[arg-type]
                    else:
                        result = self._perform(action)
                except errors.MailError as exc:
                    # The flow sees the failure, so that a best-effort step (an RSET after a
                    # refusal) cannot mask the error that triggered it; a broken connection
                    # is given up first.
                    if self.pump.verdict(exc) is Verdict.GIVE_UP:
                        self.give_up(exc)
                    failure = exc
        except BaseException as exc:
            self._settle(exc)
            raise
        finally:
            self.busy = False
            flow.close()

    def _settle(self, error: BaseException | None) -> None:
        verdict = self.pump.verdict(error)
        if verdict is Verdict.CLOSE:
            self.close()
        elif verdict is Verdict.GIVE_UP:
            self.give_up(typing.cast("BaseException", error))

    def give_up(self, error: BaseException) -> None:
        self.pump.fail(error)
        self.close()

    def _write(self, block: bytes) -> None:
        sys.audit("mailsdk.send", self.stream, block)  # smtplib.send's shape: (self, data)
        pump = self.pump
        try:
            self.stream.send_all(block, pump.write_timeout(len(block)), stall=pump.timeouts.command)
        except errors.WriteTimeout as exc:
            raise pump.write_timed_out(exc) from exc

    def _read(self) -> None:
        try:
            data = self.stream.receive(RECEIVE_SIZE, self.pump.remaining())
        except errors.ReadTimeout as exc:  # the transport's own says "read": name the phase
            raise self.pump.read_timed_out() from exc
        self.pump.feed(data)

    def _flush(self) -> None:
        if self.pump.buffered and not self.closed:
            self._write(self.pump.take())

    def _exchange(self, action: flows.Exchange) -> tuple[CommandReplied, ...]:
        if self.closed:
            raise errors.ConnectionLost("the connection was closed")
        pump = self.pump
        for block in pump.encode(action):
            self._write(block)
        if action.replies == 0:
            return ()
        while (events := pump.poll()) is None:
            self._read()
        return events

    def _perform(self, action: flows.Action) -> object:
        if self.closed and not isinstance(action, flows.Close):
            raise errors.ConnectionLost("the connection was closed")
        if isinstance(action, flows.Exchange):
            return self._exchange(action)
        self._flush()
        match action:
            case flows.AwaitGreeting():
                self.pump.greeting()
                while (greeting := self.pump.poll_greeting()) is None:
                    self._read()
                return greeting
            case flows.StartTls():
                return self._start_tls()
            case flows.ObtainToken(force_refresh):
                return obtain_token(self.token_provider, force_refresh=force_refresh)
            case flows.Close():
                self.close()
                return None
            case flows.Pull() | flows.Report():  # Report: handled by steps
                return None
        typing.assert_never(action)

    def _start_tls(self) -> flows.TlsInfo:
        if self.tls_context is None:
            raise errors.TLSError("STARTTLS needs a TLS context")
        self.stream = self.stream.start_tls(
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

    def close(self) -> None:
        """Close the stream (idempotent)."""
        if not self.closed:
            self.closed = True
            self.stream.close()
