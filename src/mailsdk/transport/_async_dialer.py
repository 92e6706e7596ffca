"""asyncio Happy Eyeballs (RFC 8305): the lookup and the racing connects run as tasks.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

asyncio's own ``create_connection(happy_eyeballs_delay=...)`` races connects too, but it hides
which addresses were tried (one ``OSError("Multiple exceptions: ...")``) and cannot take a
custom resolver; this dialer shares ordering and errors with the blocking one
(``addresses.py``). One ``asyncio.timeout`` bounds the lookup and the attempts: a lookup cut
short is abandoned in the executor, cancelled attempts close their sockets.
"""

from __future__ import annotations

import asyncio
import socket

from mailsdk.errors import ConnectError
from mailsdk.transport._addresses import (
    CONNECTION_ATTEMPT_DELAY,
    AddrInfo,
    Attempt,
    Resolver,
    all_failed,
    interleave,
    is_ip_literal,
    literal_addrinfo,
    no_addresses,
    system_resolver,
    timed_out,
)
from mailsdk.transport.base import format_address

__all__ = ["open_tcp_async", "resolve_async"]


async def resolve_async(host: str, port: int, resolver: Resolver | None) -> list[AddrInfo]:
    """Resolve ``host`` in the loop's default executor (never blocking the loop).

    Raises:
        ConnectError: the name did not resolve, or to no stream address.
    """
    target = format_address((host, port)) or host
    try:
        if resolver is None and is_ip_literal(host):
            return literal_addrinfo(host, port)
        lookup = resolver or system_resolver
        infos = await asyncio.get_running_loop().run_in_executor(
            None, lambda: list(lookup(host, port))
        )
    except (OSError, UnicodeError) as exc:
        raise no_addresses(target, exc) from exc
    if not infos:
        raise no_addresses(target)
    return infos


async def _attempt(
    info: AddrInfo, source_address: tuple[str, int] | None, attempt: Attempt
) -> socket.socket:
    family, kind, proto, _, sockaddr = info
    try:  # EAFNOSUPPORT on a host without IPv6: that, not "no answer", is the reason
        sock = socket.socket(family, kind or socket.SOCK_STREAM, proto)
    except OSError as exc:
        attempt.failed(exc)
        raise
    try:
        sock.setblocking(False)
        if source_address is not None:
            sock.bind(source_address)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException as exc:  # cancellation included: the socket must not leak
        sock.close()
        if isinstance(exc, OSError):
            attempt.failed(exc)
        raise
    return sock


async def open_tcp_async(
    host: str,
    port: int,
    *,
    timeout: float | None,
    source_address: tuple[str, int] | None = None,
    resolver: Resolver | None = None,
    attempt_delay: float = CONNECTION_ATTEMPT_DELAY,
) -> socket.socket:
    """Resolve and connect with Happy Eyeballs; return the winning (non-blocking) socket.

    Args:
        host: the name or IP literal (without brackets).
        port: the TCP port.
        timeout: seconds for resolution and every attempt together (``None``: no limit).
        source_address: a local ``(host, port)`` to bind each attempt's socket to.
        resolver: a custom lookup (default: the system's ``getaddrinfo``).
        attempt_delay: seconds before the next attempt starts while one is pending.

    Raises:
        ConnectError: every address failed (``.attempts`` names each) or none resolved.
        ConnectTimeout: the deadline passed (its ``.attempts`` name the addresses tried).
    """
    target = format_address((host, port)) or host
    attempts: list[Attempt] = []
    resolving = [True]
    try:
        async with asyncio.timeout(timeout):
            infos = interleave(await resolve_async(host, port, resolver))
            resolving[0] = False
            return await _race(target, infos, source_address, attempt_delay, attempts)
    except TimeoutError:
        raise timed_out(target, attempts, resolving=resolving[0]) from None


async def _race(
    target: str,
    infos: list[AddrInfo],
    source_address: tuple[str, int] | None,
    attempt_delay: float,
    attempts: list[Attempt],
) -> socket.socket:
    tasks: set[asyncio.Task[socket.socket]] = set()
    queue = list(infos)
    try:
        while queue or tasks:
            if queue:
                attempt = Attempt(queue[0][4])
                attempts.append(attempt)
                tasks.add(asyncio.ensure_future(_attempt(queue.pop(0), source_address, attempt)))
            done, _ = await asyncio.wait(
                tasks, timeout=attempt_delay if queue else None, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                tasks.discard(task)
                if task.exception() is None:
                    return _nodelay(task.result())
            # A failure, or the delay passing, starts the next attempt at once (RFC 8305 §5).
        raise all_failed(target, attempts)
    finally:
        await _cancel(tasks)


def _nodelay(sock: socket.socket) -> socket.socket:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        sock.close()
        raise ConnectError(f"connection reset right after connecting: {exc}") from exc
    return sock


async def _cancel(tasks: set[asyncio.Task[socket.socket]]) -> None:
    """Cancel the losing attempts and close any that connected anyway."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, socket.socket):
            result.close()
