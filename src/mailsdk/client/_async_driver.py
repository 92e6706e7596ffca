"""The asyncio driver: runs a flow on an :class:`~mailsdk.transport.AsyncStream`.

Layer: L5 client (private). May import L0-L4. This and ``_sync_driver.py`` are the only code
written twice (docs/architecture.md); everything they decide is in ``_common.Pump`` and the flows.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import typing
from collections.abc import Generator

from mailsdk.auth.tokens import AccessToken, AsyncTokenProvider, TokenProvider
from mailsdk.client._common import RECEIVE_SIZE, SAFE_TO_QUIT, Pump, tls_info_of
from mailsdk.errors import (
    ConfigurationError,
    ConnectionLost,
    LocalProtocolError,
    MailError,
    ReplyError,
    TLSError,
    TokenError,
)
from mailsdk.flows import (
    Action,
    AwaitGreeting,
    Close,
    ObtainToken,
    SendBdat,
    SendBody,
    StartTls,
    Submit,
    TlsInfo,
)
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
        self._busy = False

    async def run(self, flow: Generator[Action, object, T]) -> T:
        """Run ``flow`` to completion and return its value.

        Raises:
            MailError: whatever the flow or the I/O raised (an I/O failure is thrown into the
                flow first). Transport and protocol failures, any other exception (e.g. a
                cancellation), and a 421 from the server close the stream (the session is
                unusable).
        """
        if self.closed:
            raise ConnectionLost("the session is closed")
        if self._busy:
            # Interleaved calls would read each other's replies; refuse before any I/O.
            raise LocalProtocolError(
                "another call is in progress on this session: a session runs one call at a time"
            )
        self._busy = True
        result: object = None
        failure: MailError | None = None
        try:
            while True:
                try:
                    action = flow.send(result) if failure is None else flow.throw(failure)
                except StopIteration as stop:
                    if self.pump.server_closing:  # e.g. a 421 returned by a raw command
                        await self.aclose()
                    return typing.cast("T", stop.value)
                try:
                    result, failure = await self._perform(action), None
                except MailError as exc:
                    # The flow sees the failure, so that a best-effort step (an RSET after a
                    # refusal) cannot mask the error that triggered it; a broken connection
                    # is given up first.
                    if not isinstance(exc, SAFE_TO_QUIT):
                        await self._give_up(exc)
                    result, failure = None, exc
        except SAFE_TO_QUIT as exc:
            # The conversation is still in step (a refusal, or a local check before anything
            # was written): the session stays usable, unless the server said 421 (closing).
            if self.pump.server_closing or (isinstance(exc, ReplyError) and exc.reply.code == 421):
                await self.aclose()
            raise
        except BaseException as exc:
            # A transport or protocol failure, or anything else in the middle of an exchange
            # (a cancellation, KeyboardInterrupt): replies may still be owed, so the next
            # command could be paired with a stale reply. The connection is given up.
            await self._give_up(exc)
            raise
        finally:
            self._busy = False
            flow.close()

    async def _give_up(self, error: BaseException) -> None:
        self.pump.fail(error)
        await self.aclose()

    async def _perform(self, action: Action) -> object:
        if self.closed and not isinstance(action, Close):
            raise ConnectionLost("the connection was closed")
        match action:
            case AwaitGreeting():
                self.pump.greeting()
                while (greeting := self.pump.poll_greeting()) is None:
                    self.pump.feed(await self.stream.receive(RECEIVE_SIZE, self.pump.remaining()))
                return greeting
            case Submit(commands, phase):
                return await self._exchange(self.pump.submit(commands, phase))
            case SendBody(body, then):
                return await self._exchange(self.pump.body(body, then))
            case SendBdat(chunk, last):
                return await self._exchange(self.pump.bdat(chunk, last))
            case StartTls():
                return await self._start_tls()
            case ObtainToken(force_refresh):
                return await self._token(force_refresh)
            case Close():
                await self.aclose()
                return None
        typing.assert_never(action)

    async def _exchange(self, data: bytes) -> object:
        await self.stream.send_all(data, self.pump.write_timeout(len(data)))
        while (events := self.pump.poll()) is None:
            self.pump.feed(await self.stream.receive(RECEIVE_SIZE, self.pump.remaining()))
        return events

    async def _start_tls(self) -> TlsInfo:
        if self.tls_context is None:
            raise TLSError("STARTTLS needs a TLS context")
        self.stream = await self.stream.start_tls(
            self.tls_context, self._server_hostname, self.pump.timeouts.tls
        )
        self.pump.connection.tls_started()
        info = self.tls_info()
        if info is None:  # pragma: no cover - start_tls always returns a TLS stream
            raise TLSError("the stream is not encrypted after STARTTLS")
        return info

    def _binding(self) -> tuple[str, bytes] | None:
        for kind in ("tls-exporter", "tls-server-end-point"):
            data = self.stream.channel_binding(kind)
            if data is not None:
                return kind, data
        return None

    async def _token(self, force_refresh: bool) -> AccessToken:
        get = getattr(self.token_provider, "get_token", None)
        if get is None:
            raise ConfigurationError("OAuth needs a token provider")
        # The command deadline bounds the wait, so a hanging identity provider cannot hang
        # the session (a blocking provider's thread is abandoned, not killed).
        try:
            async with asyncio.timeout(self.pump.timeouts.command):
                if inspect.iscoroutinefunction(get):
                    provider = typing.cast("AsyncTokenProvider", self.token_provider)
                    return await provider.get_token(force_refresh=force_refresh)
                # msal and google-auth are blocking: keep them off the event loop.
                sync = typing.cast("TokenProvider", self.token_provider)
                return await asyncio.to_thread(sync.get_token, force_refresh=force_refresh)
        except TimeoutError:
            raise TokenError(
                f"no access token within the {self.pump.timeouts.command} s command deadline"
            ) from None

    def tls_info(self) -> TlsInfo | None:
        """The TLS details of the current stream, or ``None`` when it is plaintext."""
        if not self.stream.is_tls:
            return None
        info = self.stream.info
        return tls_info_of(info.tls_version, info.tls_cipher, self._binding())

    async def aclose(self) -> None:
        """Close the stream (idempotent)."""
        if not self.closed:
            self.closed = True
            await self.stream.aclose()
