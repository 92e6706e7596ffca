"""The default EHLO name: a host-name lookup, the one piece of I/O in setting up a session.

Layer: L5 client (private, drivers' side: this module does I/O). May import L0-L4.

``socket.getfqdn()`` may query DNS. It runs once per process; the asyncio client runs that first
call in a worker thread so that it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import typing

__all__ = ["alocal_hostname", "default_local_hostname", "local_fqdn", "local_hostname"]


@functools.lru_cache(maxsize=1)
def local_fqdn() -> str:
    """``socket.getfqdn()``, once per process."""
    return socket.getfqdn()


def default_local_hostname(local_address: object) -> str:
    """The EHLO name: the FQDN when it has a dot, else an address literal (RFC 5321 §4.1.3)."""
    fqdn = local_fqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    if isinstance(local_address, tuple) and local_address:
        ip = str(typing.cast("tuple[object, ...]", local_address)[0])
        return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    return "localhost.localdomain"


def local_hostname(configured: str | None, local_address: object) -> str:
    """The configured EHLO name, else the default for the socket's local address."""
    return configured or default_local_hostname(local_address)


async def alocal_hostname(configured: str | None, local_address: object) -> str:
    """:func:`local_hostname` for the event loop: the first lookup runs in a worker thread."""
    if configured:
        return configured
    if local_fqdn.cache_info().currsize == 0:
        await asyncio.to_thread(local_fqdn)
    return default_local_hostname(local_address)
