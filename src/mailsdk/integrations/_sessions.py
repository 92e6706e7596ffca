"""One reusable session per process, opened under a connection lease and closed when idle.

Layer: L7 (integrations, private). Imports ``mailsdk.client`` and L0; the connection limiter is
any object with the batch engine's ``ConnectionLimiter`` shape (``try_acquire``/``renew``/
``release``), such as :class:`mailsdk.integrations.redis.RedisConnectionLimiter`.

A background keeper thread renews the lease while the session is open and closes the session
(and releases the lease) once it has been idle for ``idle_timeout`` seconds, so a process that
stops sending frees its slot for the others. A process that dies simply stops renewing: its lease
expires on its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import typing
from collections.abc import Callable, Generator

from mailsdk.client import Client, Session
from mailsdk.errors import MailError, PoolTimeout

__all__ = ["ConnectionLimiterLike", "LeasedSession"]

_log = logging.getLogger("mailsdk.integrations")


class ConnectionLimiterLike(typing.Protocol):
    """The ``ConnectionLimiter`` protocol of the batch engine (structural copy)."""

    def try_acquire(self) -> str | None:
        """A lease id, or ``None`` when the cap is reached."""
        ...

    def renew(self, lease: str) -> bool:
        """Keep a lease alive; ``False`` if it had expired."""
        ...

    def release(self, lease: str) -> None:
        """Give the slot back."""
        ...


class LeasedSession:
    """A lazily opened, reused :class:`Session` of ``client_factory()``'s client.

    Args:
        client_factory: builds the :class:`Client` (called once, on first use: after a fork).
        limiter: the cross-process connection cap, or ``None``.
        idle_timeout: seconds without a send after which the session is closed.
        acquire_timeout: how long :meth:`use` waits for a connection slot.
        renew_every: how often the keeper renews the lease and checks for idleness (default:
            the smaller of ``idle_timeout / 2`` and the limiter's ``lease_ttl / 3``).
    """

    def __init__(
        self,
        client_factory: Callable[[], Client],
        limiter: ConnectionLimiterLike | None = None,
        *,
        idle_timeout: float = 5.0,
        acquire_timeout: float = 30.0,
        renew_every: float | None = None,
    ) -> None:
        self._factory = client_factory
        self._client: Client | None = None
        self._limiter = limiter
        self._idle_timeout = idle_timeout
        self._acquire_timeout = acquire_timeout
        if renew_every is None:
            # Renew well inside the lease's life, and check for idleness twice per timeout.
            lease_ttl = getattr(limiter, "lease_ttl", None)
            renew_every = idle_timeout / 2
            if isinstance(lease_ttl, int | float) and lease_ttl > 0:
                renew_every = min(renew_every, lease_ttl / 3)
        self._renew_every = max(0.05, renew_every)
        self._lock = threading.Lock()  # guards the fields below; never held across I/O
        self._session: Session | None = None
        self._lease: str | None = None
        self._busy = False
        self._last_used = 0.0
        self._lost = False
        self._stopped = threading.Event()
        self._keeper: threading.Thread | None = None

    @property
    def client(self) -> Client:
        """The client (built on first access)."""
        if self._client is None:
            self._client = self._factory()
        return self._client

    def _acquire(self) -> str | None:
        if self._limiter is None:
            return None
        deadline = time.monotonic() + self._acquire_timeout
        delay = 0.01
        while True:
            lease = self._limiter.try_acquire()
            if lease is not None:
                return lease
            if time.monotonic() >= deadline:
                raise PoolTimeout(
                    f"no connection slot freed within {self._acquire_timeout:g}s "
                    "(the cluster-wide connection cap is reached)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    @contextlib.contextmanager
    def use(self) -> Generator[Session, None, None]:
        """Yield the open session (connecting under a new lease if needed).

        A :class:`MailError` escaping the block closes the session (it may be unusable).

        Raises:
            PoolTimeout: no connection slot within ``acquire_timeout``.
            CoordinationUnavailable: the limiter's store failed.
            ConnectError, AuthError...: connecting failed (the lease is released).
        """
        with self._lock:
            if self._busy:
                raise RuntimeError("LeasedSession.use() is not reentrant")
            self._busy = True
            session = self._session if not self._lost else None
        try:
            if session is None or session.closed:
                self._close_now()
                lease = self._acquire()
                try:
                    session = self.client.connect()
                except BaseException:
                    if lease is not None and self._limiter is not None:
                        with contextlib.suppress(MailError):
                            self._limiter.release(lease)
                    raise
                with self._lock:
                    self._session, self._lease, self._lost = session, lease, False
                self._start_keeper()
            try:
                yield session
            except MailError:
                self._close_now()
                raise
        finally:
            with self._lock:
                self._busy = False
                self._last_used = time.monotonic()

    def _start_keeper(self) -> None:
        if self._keeper is not None and self._keeper.is_alive():
            return
        self._stopped.clear()
        self._keeper = threading.Thread(target=self._keep, name="mailsdk-lease-keeper", daemon=True)
        self._keeper.start()

    def _keep(self) -> None:
        while not self._stopped.wait(self._renew_every):
            with self._lock:
                idle = not self._busy and time.monotonic() - self._last_used > self._idle_timeout
                lease, has_session = self._lease, self._session is not None
            if not has_session:
                continue  # the keeper lives until close(): a session opened later needs it
            if idle:
                with self._lock:
                    if self._busy:
                        continue
                    self._busy = True
                try:
                    self._close_now()
                finally:
                    with self._lock:
                        self._busy = False
                continue
            if lease is not None and self._limiter is not None:
                try:
                    alive = self._limiter.renew(lease)
                except MailError as exc:
                    _log.warning("could not renew the connection lease: %s", exc)
                    continue
                if not alive:
                    # The slot was given to someone else (we were too slow to renew): stop
                    # using this connection as soon as the current send is over.
                    with self._lock:
                        self._lost = True

    def _close_now(self) -> None:
        with self._lock:
            session, lease = self._session, self._lease
            self._session = self._lease = None
        if session is not None:
            with contextlib.suppress(MailError, OSError):
                if not session.closed:
                    session.quit()
            session.close()
        if lease is not None and self._limiter is not None:
            try:
                self._limiter.release(lease)
            except MailError as exc:  # it expires on its own
                _log.warning("could not release the connection lease: %s", exc)

    def close(self) -> None:
        """Close the session, release the lease and stop the keeper (idempotent)."""
        self._stopped.set()
        self._close_now()
        keeper = self._keeper
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout=5)
