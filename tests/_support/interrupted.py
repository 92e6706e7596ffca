"""Helpers for tests of sessions broken mid-exchange: scripted greetings, short deadlines,
a recording tracer, and a stream whose ``receive`` raises a non-mail error.

Not collected.
"""

from __future__ import annotations

import typing

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests._support.modes import SessionProxy, plain_builder
from tests._support.scripted_server import Expect, ScriptedServer, Send, ehlo_reply

import mailsdk
from mailsdk import ClientBuilder, Timeouts

__all__ = ["Boom", "break_receive", "hello", "short", "traced"]


def hello(*keywords: str) -> list[typing.Any]:
    return [Send(b"220 mx.test ESMTP\r\n"), Expect(b"EHLO"), Send(ehlo_reply(*keywords))]


def short(server: ScriptedServer) -> ClientBuilder:
    timeouts = Timeouts(connect=2.0, greeting=2.0, command=2.0, tls=2.0, data=2.0, quit=0.5)
    return plain_builder(server.host, server.port).with_timeouts(timeouts)


def traced(builder: ClientBuilder) -> tuple[ClientBuilder, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return builder.with_opentelemetry(tracer_provider=provider), exporter


class Boom(BaseException):
    """Stands for KeyboardInterrupt/SystemExit: a non-MailError that escapes mid-exchange."""


class _FailingReceive:
    """Wraps a driver's stream: ``receive`` raises :class:`Boom` (sync or async)."""

    def __init__(self, inner: typing.Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)

    def receive(self, max_bytes: int, timeout: float | None) -> typing.Any:
        raise Boom

    async def areceive(self, max_bytes: int, timeout: float | None) -> bytes:
        raise Boom


def break_receive(session: SessionProxy) -> None:
    """From now on, the session's next read raises :class:`Boom`."""
    driver = session.inner._driver
    wrapper = _FailingReceive(driver.stream)
    if isinstance(session.inner, mailsdk.AsyncSession):
        wrapper.receive = wrapper.areceive  # type: ignore[method-assign]
    driver.stream = wrapper
