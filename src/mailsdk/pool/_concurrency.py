"""How many connections a pool may use now: cut when the server throttles, regrown when not.

Layer: L5c (pool). Pure state changes, no clock.

Additive increase, multiplicative decrease, as in TCP's congestion control:

* a throttling reply (421/451 4.7.x, 452 "too many", 4.3.2, 4.4.5: see
  :mod:`mailsdk.protocol.retry`) halves the limit, down to ``floor`` (1);
* every good reply adds ``1 / limit``: the limit grows by one connection per round of good
  replies over the connections in use, back up to the pool's ``max_connections``. The pool
  counts good replies only while every allowed connection is busy (as TCP grows its window
  only while it is used up).

Only replies to sends made since the last cut count, for a cut and for growth alike: the replies
already on their way from the other connections answer the same overload, and must neither cut
again nor regrow the limit. Each cut starts a new *epoch*; a send notes the epoch it started in
and hands it back with its reply.

A pool never opens (or hands out) more connections than the limit; connections above it are
closed as their callers give them back.
"""

from __future__ import annotations

import attrs

__all__ = ["Concurrency"]


@attrs.define
class Concurrency:
    """The adaptive connection limit of one pool (not thread-safe: the pool's lock serialises).

    Attributes:
        ceiling: the configured ``max_connections``.
        floor: the limit is never cut below this.
        limit: the number of connections allowed in use now.
        epoch: bumped at every throttling reply that counted (see the module docstring).
        cuts: how many times the limit was cut.
    """

    ceiling: int
    floor: int = 1
    limit: int = attrs.field(init=False)
    epoch: int = attrs.field(init=False, default=0)
    cuts: int = attrs.field(init=False, default=0)
    _credit: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self.floor = max(1, min(self.floor, self.ceiling))
        self.limit = self.ceiling

    @property
    def reduced(self) -> bool:
        """True while the limit is below the ceiling."""
        return self.limit < self.ceiling

    def throttled(self, epoch: int) -> bool:
        """A throttling reply to a send made in ``epoch``; ``True`` when the limit was cut."""
        if epoch != self.epoch:
            return False  # it answers a send made before the last cut
        self.epoch += 1
        self._credit = 0.0
        if self.limit <= self.floor:
            return False
        self.limit = max(self.floor, self.limit // 2)
        self.cuts += 1
        return True

    def succeeded(self, epoch: int, count: int = 1) -> bool:
        """``count`` good replies to sends made in ``epoch``; ``True`` when the limit grew."""
        if self.limit >= self.ceiling or epoch != self.epoch:
            return False
        self._credit += count / self.limit
        grew = False
        while self._credit >= 1.0 and self.limit < self.ceiling:
            self._credit -= 1.0
            self.limit += 1
            grew = True
        return grew
