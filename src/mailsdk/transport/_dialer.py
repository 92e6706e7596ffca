"""Blocking Happy Eyeballs (RFC 8305): name resolution and racing connects in one deadline.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

``getaddrinfo`` has no timeout, so the lookup runs in a daemon thread and the caller waits for it
only until the connect deadline (a thread stuck in a dead resolver is abandoned, never joined:
it ends when the system resolver gives up). The connects are non-blocking sockets watched by one
``selectors`` loop: a new attempt starts when the previous one failed or after
``CONNECTION_ATTEMPT_DELAY``; the first to connect wins and the others are closed.
"""

from __future__ import annotations

import errno
import os
import queue
import selectors
import socket
import threading
import time
import typing

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

__all__ = ["open_tcp", "resolve"]

_IN_PROGRESS: typing.Final = frozenset({0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN})


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Lookup:
    """One lookup handed to a worker; ``outcome`` is the answer list or the exception."""

    __slots__ = ("done", "outcome", "run")

    def __init__(self, run: typing.Callable[[], list[AddrInfo]]) -> None:
        self.run = run
        self.done = threading.Event()
        self.outcome: list[AddrInfo] | BaseException | None = None


class _LookupWorkers:
    """Daemon threads that run lookups; a new one starts whenever none is idle.

    A hung lookup therefore never delays another, and a process can exit while one hangs
    (daemon threads are not joined). Idle workers wait ``IDLE`` seconds for more work, so a
    client that connects often pays for a queue hand-off, not a thread start (~200 us).
    """

    IDLE: typing.ClassVar[float] = 30.0

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[_Lookup] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: _Lookup) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that worker is now spoken for
            else:
                threading.Thread(target=self._work, name="mailsdk-resolver", daemon=True).start()
            self._jobs.put(job)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        return
                continue  # a job was promised to this worker: take it
            try:
                job.outcome = job.run()
            except BaseException as exc:  # handed to the waiting caller
                job.outcome = exc
            finally:
                job.done.set()
            with self._lock:
                self._idle += 1


_LOOKUPS: typing.Final = _LookupWorkers()
# A forked child has none of its parent's worker threads: without a reset it would count the
# parent's idle ones, queue its lookups for them and wait forever (Celery's prefork workers,
# ``send_batch(processes=...)``, a server that preloads and forks).
os.register_at_fork(after_in_child=_LOOKUPS._reset)  # pyright: ignore[reportPrivateUsage]


def resolve(
    host: str, port: int, resolver: Resolver | None, deadline: float | None
) -> list[AddrInfo]:
    """Resolve ``host`` before ``deadline`` (``None``: no limit), in a worker thread.

    Raises:
        ConnectError: the name did not resolve, or to no stream address.
        ConnectTimeout: the deadline passed first.
    """
    target = format_address((host, port)) or host
    if resolver is None and is_ip_literal(host):
        try:
            return literal_addrinfo(host, port)
        except OSError as exc:
            raise no_addresses(target, exc) from exc
    lookup = resolver or system_resolver
    job = _Lookup(lambda: list(lookup(host, port)))
    _LOOKUPS.submit(job)
    if not job.done.wait(_left(deadline)):
        raise timed_out(target, (), resolving=True)
    result = job.outcome
    if isinstance(result, BaseException):
        if isinstance(result, OSError | UnicodeError):
            raise no_addresses(target, result) from result
        raise result
    if not result:
        raise no_addresses(target)
    return result


def _start(
    info: AddrInfo, source_address: tuple[str, int] | None, attempt: Attempt
) -> socket.socket | None:
    """Begin a non-blocking connect; ``None`` (reason recorded) when it failed at once."""
    family, kind, proto, _, sockaddr = info
    try:
        sock = socket.socket(family, kind or socket.SOCK_STREAM, proto)
    except OSError as exc:
        attempt.failed(exc)
        return None
    try:
        if source_address is not None:
            sock.bind(source_address)
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
    except OSError as exc:
        sock.close()
        attempt.failed(exc)
        return None
    except BaseException:
        sock.close()
        raise
    if code not in _IN_PROGRESS:
        sock.close()
        attempt.failed(OSError(code, errno.errorcode.get(code, str(code))))
        return None
    return sock  # connecting (or, rarely, connected already: the selector reports both)


def open_tcp(
    host: str,
    port: int,
    *,
    deadline: float | None,
    source_address: tuple[str, int] | None = None,
    resolver: Resolver | None = None,
    attempt_delay: float = CONNECTION_ATTEMPT_DELAY,
) -> socket.socket:
    """Resolve and connect with Happy Eyeballs; return the winning socket (blocking mode).

    Args:
        host: the name or IP literal (without brackets).
        port: the TCP port.
        deadline: a ``time.monotonic()`` value covering resolution and every attempt.
        source_address: a local ``(host, port)`` to bind each attempt's socket to.
        resolver: a custom lookup (default: the system's ``getaddrinfo``).
        attempt_delay: seconds before the next attempt starts while one is pending.

    Raises:
        ConnectError: every address failed (``.attempts`` names each) or none resolved.
        ConnectTimeout: the deadline passed (its ``.attempts`` name the addresses tried).
    """
    target = format_address((host, port)) or host
    infos = interleave(resolve(host, port, resolver, deadline))
    if not infos:
        raise no_addresses(target)
    if len(infos) == 1:  # nothing to race: a plain blocking connect is cheaper
        return _connect_one(target, infos[0], source_address, deadline)
    attempts: list[Attempt] = []
    pending: dict[socket.socket, Attempt] = {}
    selector = selectors.DefaultSelector()
    winner: socket.socket | None = None
    try:
        next_index, next_start = 0, time.monotonic()
        while winner is None:
            now = time.monotonic()
            if next_index < len(infos) and (now >= next_start or not pending):
                attempt = Attempt(infos[next_index][4])
                attempts.append(attempt)
                next_index += 1
                sock = _start(infos[next_index - 1], source_address, attempt)
                if sock is not None:
                    pending[sock] = attempt
                    selector.register(sock, selectors.EVENT_WRITE)
                next_start = now + attempt_delay if sock is not None else now
                continue
            if not pending:
                raise all_failed(target, attempts)
            left = _left(deadline)
            if left == 0:
                raise timed_out(target, attempts, resolving=False)
            wait = next_start - now if next_index < len(infos) else None
            if left is not None:
                wait = left if wait is None else min(wait, left)
            for key, _ in selector.select(wait):
                sock = typing.cast("socket.socket", key.fileobj)
                selector.unregister(sock)
                attempt = pending.pop(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0 and winner is None:
                    winner = sock
                    continue
                sock.close()
                if code != 0:
                    attempt.failed(OSError(code, os.strerror(code)))
                    next_start = time.monotonic()  # §5: a failure starts the next one now
    finally:
        for sock in pending:
            sock.close()
        selector.close()
    winner.setblocking(True)
    return _nodelay(target, winner)


def _nodelay(target: str, sock: socket.socket) -> socket.socket:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # the peer reset it between connect and here
        sock.close()
        raise ConnectError(f"failed connecting to {target}: {exc.strerror or exc}") from exc
    return sock


def _connect_one(
    target: str,
    info: AddrInfo,
    source_address: tuple[str, int] | None,
    deadline: float | None,
) -> socket.socket:
    family, kind, proto, _, sockaddr = info
    attempt = Attempt(sockaddr)
    left = _left(deadline)
    if left == 0:
        raise timed_out(target, [attempt], resolving=False)
    try:  # EAFNOSUPPORT on a host without IPv6: name the address in the error
        sock = socket.socket(family, kind or socket.SOCK_STREAM, proto)
    except OSError as exc:
        attempt.failed(exc)
        raise all_failed(target, [attempt]) from exc
    try:
        if source_address is not None:
            sock.bind(source_address)
        sock.settimeout(left)
        sock.connect(sockaddr)
    except TimeoutError:
        sock.close()
        raise timed_out(target, [attempt], resolving=False) from None
    except OSError as exc:
        sock.close()
        attempt.failed(exc)
        raise all_failed(target, [attempt]) from exc
    except BaseException:
        sock.close()
        raise
    return _nodelay(target, sock)
