"""What both Happy Eyeballs dialers share: resolvers, address ordering, and the error they raise.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

RFC 8305 ("Happy Eyeballs Version 2"): resolve the name, order the answers so that the address
families alternate (§4: the first address of the preferred family, then one of the other, ...),
start one connection attempt, and start the next whenever the previous one failed or
``CONNECTION_ATTEMPT_DELAY`` passed without an answer (§5: 250 ms recommended); the first
attempt to connect wins and every other attempt is closed. The dialers in ``sockets.py``
(threads and ``select``) and ``asyncio_streams.py`` (tasks) implement those steps; this module
holds the pure parts.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import typing
from collections.abc import Callable, Iterable, Sequence

from mailsdk.errors import ConnectError, ConnectTimeout, InvalidInputError
from mailsdk.transport.base import format_address

__all__ = [
    "CONNECTION_ATTEMPT_DELAY",
    "AddrInfo",
    "Attempt",
    "Resolver",
    "all_failed",
    "interleave",
    "is_ip_literal",
    "literal_addrinfo",
    "no_addresses",
    "system_resolver",
    "timed_out",
]

#: RFC 8305 §5: the recommended delay before the next connection attempt starts (seconds).
CONNECTION_ATTEMPT_DELAY: typing.Final = 0.25

#: One ``socket.getaddrinfo`` entry: ``(family, type, proto, canonname, sockaddr)``.
AddrInfo: typing.TypeAlias = tuple[
    socket.AddressFamily | int, socket.SocketKind | int, int, str, tuple[typing.Any, ...]
]

#: A blocking name lookup with ``getaddrinfo``'s shape: ``resolver(host, port)`` returns the
#: stream addresses of ``host`` (the asyncio connectors run it in the loop's executor). Tests and
#: users with their own DNS (a DoH client, a static table) pass one to the TCP connectors.
Resolver: typing.TypeAlias = Callable[[str, int], Iterable[AddrInfo]]


def system_resolver(host: str, port: int) -> list[AddrInfo]:
    """The operating system's resolver: ``getaddrinfo(host, port, type=SOCK_STREAM)``."""
    return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 literal (a zone index such as ``fe80::1%eth0`` included)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def literal_addrinfo(host: str, port: int) -> list[AddrInfo]:
    """Resolve an IP literal without a lookup (``AI_NUMERICHOST`` never blocks)."""
    return list(
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    )


def interleave(infos: Iterable[AddrInfo]) -> list[AddrInfo]:
    """Order addresses as RFC 8305 §4 asks: families alternate, starting with the first answer's.

    ``getaddrinfo`` already sorts by RFC 6724 preference; that order is kept within each family.
    Duplicates (the same socket address under several protocols) are dropped.

    Args:
        infos: the resolver's answers.

    Returns:
        The attempt order.
    """
    seen: set[tuple[int, tuple[typing.Any, ...]]] = set()
    by_family: dict[int, list[AddrInfo]] = {}
    for info in infos:
        _check(info)
        key = (int(info[0]), info[4][:2])
        if info[1] not in (socket.SOCK_STREAM, 0) or key in seen:
            continue
        seen.add(key)
        by_family.setdefault(int(info[0]), []).append(info)
    queues = list(by_family.values())
    ordered: list[AddrInfo] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def _check(info: object) -> None:
    """A custom resolver's answer must have ``getaddrinfo``'s shape (else: a clear error)."""
    if not (
        isinstance(info, tuple)
        and len(info) == 5  # pyright: ignore[reportUnknownArgumentType]
        and isinstance(info[0], int)
        and isinstance(info[1], int)
        and isinstance(info[4], tuple)
        and len(info[4]) >= 2  # pyright: ignore[reportUnknownArgumentType]
    ):
        raise InvalidInputError(
            f"the resolver returned {info!r}, not a (family, type, proto, canonname, sockaddr)"
            " tuple as socket.getaddrinfo does"
        )


class Attempt:
    """One connection attempt's address and, once it ended badly, why."""

    __slots__ = ("address", "error", "reason")

    def __init__(self, sockaddr: tuple[typing.Any, ...]) -> None:
        self.address = format_address(sockaddr) or "?"
        self.reason: str | None = None
        self.error: BaseException | None = None

    def failed(self, exc: BaseException) -> None:
        """Record the failure (the OS's message, e.g. "Connection refused")."""
        self.error = exc
        if isinstance(exc, socket.gaierror) and exc.strerror:
            # Its errno is an EAI_* code (binding a source address of the other family gives
            # -9): os.strerror would say "Unknown error -9".
            self.reason = exc.strerror
        elif isinstance(exc, OSError) and exc.errno:
            # asyncio's strerror is "Connect call failed (addr)": use the OS's wording.
            self.reason = os.strerror(exc.errno)
        elif isinstance(exc, OSError) and exc.strerror:
            self.reason = exc.strerror
        else:
            self.reason = str(exc) or type(exc).__name__


def _pairs(attempts: Sequence[Attempt]) -> tuple[tuple[str, str], ...]:
    return tuple((a.address, a.reason or "no answer before the deadline") for a in attempts)


def _summary(pairs: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{address}: {reason}" for address, reason in pairs)


def all_failed(target: str, attempts: Sequence[Attempt]) -> ConnectError:
    """The error after every address failed; its message and ``.attempts`` name each one."""
    pairs = _pairs(attempts)
    noun = "address" if len(pairs) == 1 else f"all {len(pairs)} addresses"
    exc = ConnectError(f"failed connecting to {target}: {noun} failed ({_summary(pairs)})")
    exc.attempts = pairs
    causes = [a.error for a in attempts if a.error is not None]
    exc.__cause__ = causes[-1] if causes else None
    return exc


def timed_out(target: str, attempts: Sequence[Attempt], *, resolving: bool) -> ConnectTimeout:
    """The error when the connect deadline passed while resolving or connecting."""
    if resolving:
        return ConnectTimeout(f"timed out resolving the name of {target}", phase="connect")
    pairs = _pairs(attempts)
    exc = ConnectTimeout(
        f"timed out connecting to {target} ({_summary(pairs)})" if pairs else f"timed out {target}",
        phase="connect",
    )
    exc.attempts = pairs
    return exc


def no_addresses(target: str, exc: BaseException | None = None) -> ConnectError:
    """The error when the name did not resolve (or resolved to no stream address)."""
    detail = f": {exc.strerror or exc}" if isinstance(exc, OSError) else ""
    if isinstance(exc, UnicodeError):
        detail = f": invalid host name ({exc})"
    return ConnectError(f"failed connecting to {target}: the name did not resolve{detail}")
