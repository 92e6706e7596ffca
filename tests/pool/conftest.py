"""Fixtures for the pool and batch tests: fault-injecting servers and a both-modes batch runner."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator

import pytest
from tests._support.faulty_smtpd import FaultyServer, start_faulty
from tests._support.modes import Mode

from mailsdk import ClientBuilder, SendOutcome
from mailsdk.batch import BatchReport


@pytest.fixture
def faulty() -> Iterator[Callable[..., FaultyServer]]:
    servers: list[FaultyServer] = []

    def make(faults: dict[int, str] | None = None, **options: typing.Any) -> FaultyServer:
        server = start_faulty(faults or {}, **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


async def run_batch(
    mode: Mode,
    builder: ClientBuilder,
    items: Iterable[object],
    *,
    pool: dict[str, typing.Any] | None = None,
    **options: typing.Any,
) -> tuple[list[SendOutcome], BatchReport]:
    """Run ``send_batch`` to the end in the given mode; return the outcomes and the report."""
    client = mode.build(builder)
    if mode.is_async:
        async with client.pool(**(pool or {})) as apool:  # type: ignore[union-attr]
            arun = apool.send_batch(items, **options)
            outcomes = [o async for o in arun]
            return outcomes, arun.report
    with client.pool(**(pool or {})) as spool:  # type: ignore[union-attr]
        run = spool.send_batch(items, **options)
        return list(run), run.report
