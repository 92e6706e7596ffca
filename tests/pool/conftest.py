"""Fixtures for the pool and batch tests: fault-injecting servers and a both-modes batch runner."""

from __future__ import annotations

import pathlib
import typing
from collections.abc import Callable, Iterable, Iterator

import pytest
from tests._support.faulty_smtpd import FaultyServer, start_faulty
from tests._support.modes import Mode

from mailsdk import ClientBuilder, SendOutcome
from mailsdk.batch import BatchReport


@pytest.fixture
def engines(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Which engine each worker process of a ``send_batch(processes=N)`` ran, as the workers
    themselves recorded it (they are forked with the recording patched in): call the fixture's
    value for the sorted list, one ``"asyncio"`` or ``"threads"`` per worker."""
    from mailsdk.pool import _async_worker, _process_worker

    log = tmp_path / "engines.log"
    on_loop, in_threads = _async_worker.send_on_loop, _process_worker._send_in_threads

    def note(engine: str) -> None:
        with log.open("a", encoding="ascii") as f:  # O_APPEND: one line per worker
            f.write(f"{engine}\n")

    def loop_noted(*args: typing.Any, **kwargs: typing.Any) -> None:
        note("asyncio")
        on_loop(*args, **kwargs)

    def threads_noted(*args: typing.Any, **kwargs: typing.Any) -> None:
        note("threads")
        in_threads(*args, **kwargs)

    monkeypatch.setattr(_async_worker, "send_on_loop", loop_noted)
    monkeypatch.setattr(_process_worker, "_send_in_threads", threads_noted)
    return lambda: sorted(log.read_text(encoding="ascii").split()) if log.exists() else []


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
