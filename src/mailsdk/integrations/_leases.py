"""Keep a shared connection limiter's leases alive while their connections are open.

Layer: L7 (integrations, private). Imports ``mailsdk.batch`` (the ``ConnectionLimiter``
protocol) and L0; no framework.

The pool renews a connection's lease when it checks the connection out or in. A connection
busy with one long ``send_many`` run (or idle between tasks) may outlive a short lease meanwhile,
and an expired lease lets another process open a connection beyond the cap. :class:`LeaseKeeper`
wraps any :class:`~mailsdk.batch.ConnectionLimiter` (e.g.
:class:`mailsdk.integrations.redis.RedisConnectionLimiter`) and renews every lease it handed
out from a background thread until the pool releases it. A process that dies stops renewing,
so its leases lapse on their own after ``lease_ttl``: that is what frees a dead worker's slots.
"""

from __future__ import annotations

import logging
import threading

from mailsdk.batch.limits import ConnectionLimiter
from mailsdk.errors import MailError

__all__ = ["LeaseKeeper"]

_log = logging.getLogger("mailsdk.integrations")


class LeaseKeeper:
    """A :class:`~mailsdk.batch.ConnectionLimiter` that keeps its held leases alive.

    Args:
        limiter: the shared limiter.
        renew_every: seconds between renewals (default: a third of the limiter's ``lease_ttl``
            attribute, else 10 s).
    """

    def __init__(self, limiter: ConnectionLimiter, *, renew_every: float | None = None) -> None:
        if renew_every is None:
            ttl = getattr(limiter, "lease_ttl", None)
            renew_every = ttl / 3 if isinstance(ttl, int | float) and ttl > 0 else 10.0
        self.limiter = limiter
        self._every = max(0.05, renew_every)
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<LeaseKeeper {self.limiter!r} held={len(self._held)}>"

    @property
    def held(self) -> int:
        """How many leases this process holds now."""
        with self._lock:
            return len(self._held)

    def try_acquire(self) -> str | None:
        """A lease of the shared limiter (kept alive from now on), or ``None`` when full."""
        lease = self.limiter.try_acquire()
        if lease is not None:
            with self._lock:
                self._held.add(lease)
                if self._thread is None or not self._thread.is_alive():
                    self._stopped.clear()
                    self._thread = threading.Thread(
                        target=self._keep, name="mailsdk-lease-keeper", daemon=True
                    )
                    self._thread.start()
        return lease

    def renew(self, lease: str) -> bool:
        """Renew now; ``False`` (and no more renewals) if the lease had expired."""
        alive = self.limiter.renew(lease)
        if not alive:
            with self._lock:
                self._held.discard(lease)
        return alive

    def release(self, lease: str) -> None:
        """Stop renewing ``lease`` and give the slot back."""
        with self._lock:
            self._held.discard(lease)
        self.limiter.release(lease)

    def _keep(self) -> None:
        while not self._stopped.wait(self._every):
            with self._lock:
                leases = list(self._held)
            for lease in leases:
                try:
                    alive = self.limiter.renew(lease)
                except MailError as exc:  # Redis restarting: the next round tries again
                    _log.warning("could not renew a connection lease: %s", exc)
                    continue
                if not alive:
                    # Too late: the slot may be someone else's now. The pool notices at
                    # check-in (renew is False) and closes that connection.
                    _log.warning("a connection lease expired while its connection was open")
                    with self._lock:
                        self._held.discard(lease)

    def close(self) -> None:
        """Stop the keeper thread (the pool releases the leases when it closes)."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
