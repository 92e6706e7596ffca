"""The sync|async runner used by every client test, and the plain test builder.

Not collected. :class:`Mode` and :class:`SessionProxy` hide the difference between the blocking
and the asyncio API so that one ``async def`` test body covers both: in ``sync`` mode the
blocking method is called directly on the test's thread (the servers run in their own
threads, so nothing deadlocks and no executor thread is involved); in ``async`` mode the
coroutine is awaited.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable

import mailsdk
from mailsdk import ClientBuilder

__all__ = ["TEST_TIMEOUT", "Mode", "SessionProxy", "plain_builder"]

#: Short deadlines for client tests: long enough for loopback on a busy CI box, short enough
#: that a hang would be noticed.
TEST_TIMEOUT = 3.0


def plain_builder(host: str, port: int) -> ClientBuilder:
    """A builder for a loopback test server: no TLS, short deadlines, fixed EHLO name."""
    return (
        ClientBuilder.smtp(host, port)
        .with_tls("none")
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )


class SessionProxy:
    """Wraps a :class:`mailsdk.Session` or :class:`mailsdk.AsyncSession`; every method is awaitable.

    Properties (``capabilities``, ``tls``, ``closed``...) are returned as they are; methods
    return a coroutine that calls the blocking method directly or awaits the async one.
    """

    def __init__(self, inner: mailsdk.Session | mailsdk.AsyncSession) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> typing.Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                return await result
            return result

        return call

    async def send_many_list(self, items: typing.Any) -> list[mailsdk.SendOutcome]:
        """Every outcome of ``send_many(items)`` (an iterator, or an async iterator)."""
        if isinstance(self.inner, mailsdk.AsyncSession):
            return [outcome async for outcome in self.inner.send_many(items)]
        return list(self.inner.send_many(items))

    async def close(self) -> None:
        """``close()`` or ``aclose()``."""
        if isinstance(self.inner, mailsdk.AsyncSession):
            await self.inner.aclose()
        else:
            self.inner.close()

    async def __aenter__(self) -> SessionProxy:
        if isinstance(self.inner, mailsdk.AsyncSession):
            await self.inner.__aenter__()
        else:
            self.inner.__enter__()
        return self

    async def __aexit__(self, *exc: typing.Any) -> None:
        if isinstance(self.inner, mailsdk.AsyncSession):
            await self.inner.__aexit__(*exc)
        else:
            self.inner.__exit__(*exc)


class Mode:
    """One of the two ways of using mailsdk; tests call through it so one body covers both."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_async = name == "async"

    def __repr__(self) -> str:
        return f"Mode({self.name})"

    def build(self, builder: ClientBuilder) -> mailsdk.Client | mailsdk.AsyncClient:
        """``build()`` or ``build_async()``."""
        return builder.build_async() if self.is_async else builder.build()

    async def call(
        self, fn: Callable[..., typing.Any], *args: typing.Any, **kwargs: typing.Any
    ) -> typing.Any:
        """Call ``fn`` and await the result when it is awaitable."""
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    async def connect(self, builder: ClientBuilder) -> SessionProxy:
        """Build a client and connect a session."""
        client = self.build(builder)
        return SessionProxy(await self.call(client.connect))

    @contextlib.asynccontextmanager
    async def session(self, builder: ClientBuilder) -> typing.AsyncIterator[SessionProxy]:
        """``with client.connect() as s`` / ``async with await client.connect() as s``."""
        proxy = await self.connect(builder)
        async with proxy:
            yield proxy

    async def send(self, message: typing.Any, **kwargs: typing.Any) -> mailsdk.SendResult:
        """``mailsdk.send`` or ``mailsdk.asend``."""
        if self.is_async:
            return await mailsdk.asend(message, **kwargs)
        return mailsdk.send(message, **kwargs)
