"""Builders that make ``send_batch(processes=N)`` workers run one engine or the other.

Not collected. An ordinary configuration runs the asyncio engine; a custom (blocking)
connector is one of the things that keep the threaded one (see
``mailsdk.pool._async_worker.threads_needed``). The ``engines`` fixture of ``tests/pool``
says which one the workers actually ran.
"""

from __future__ import annotations

import typing

from tests._support.modes import plain_builder

from mailsdk import ClientBuilder
from mailsdk.transport import TcpConnector

__all__ = ["ENGINES", "builder_for"]

ENGINES: typing.Final = ("asyncio", "threads")


def builder_for(engine: str, host: str, port: int) -> ClientBuilder:
    """The plain test builder, with a blocking connector of its own for ``"threads"``."""
    builder = plain_builder(host, port)
    if engine == "threads":
        builder = builder.with_connector(TcpConnector(host, port))
    return builder
