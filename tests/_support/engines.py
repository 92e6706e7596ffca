"""Builders that make ``send_batch(processes=N)`` workers run one engine or the other, and the
items and the one-outcome-each check the process-batch tests share.

Not collected. An ordinary configuration runs the asyncio engine; a custom (blocking)
connector is one of the things that keep the threaded one (see
``mailsdk.pool._async_worker.threads_needed``). The ``engines`` fixture of ``tests/pool``
says which one the workers actually ran.
"""

from __future__ import annotations

import typing

from tests._support.faulty_smtpd import recipients_for
from tests._support.modes import plain_builder

from mailsdk import ClientBuilder, Outgoing, SendOutcome
from mailsdk.transport import TcpConnector

__all__ = ["ENGINES", "builder_for", "item", "one_each"]

ENGINES: typing.Final = ("asyncio", "threads")


def builder_for(engine: str, host: str, port: int) -> ClientBuilder:
    """The plain test builder, with a blocking connector of its own for ``"threads"``."""
    builder = plain_builder(host, port)
    if engine == "threads":
        builder = builder.with_connector(TcpConnector(host, port))
    return builder


def item(index: int) -> Outgoing:
    body = f"Subject: m{index}\r\nX-Idx: {index}\r\n\r\nhello {index}\r\n".encode()
    return Outgoing(body, sender="s@x.test", recipients=recipients_for(index), key=f"k{index}")


def one_each(outcomes: typing.Sequence[SendOutcome], total: int) -> dict[int, SendOutcome]:
    seen = {o.index: o for o in outcomes}
    assert len(seen) == len(outcomes), "an item got more than one outcome"
    assert sorted(seen) == list(range(total)), "an item got no outcome"
    return seen
