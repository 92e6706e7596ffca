"""How many connections a pool may use now: cut when the server throttles, regrown when not.

Layer: L5c (pool). Pure state changes; every method takes ``now`` (no clock of its own).

Additive increase, multiplicative decrease, as in TCP's congestion control:

* a throttling reply (421/451 4.7.x, 452 "too many", 4.3.2, 4.4.5: see
  :mod:`mailsdk.protocol.retry`) halves the limit, down to ``floor`` (1). Replies that were
  already on their way from the other connections answer the same overload, so further
  throttling replies within ``cooldown`` seconds of a cut do not cut again;
* every good outcome adds ``1 / limit``: the limit grows by one connection per round of good
  replies over the connections in use, back up to the pool's ``max_connections``, and not
  before ``cooldown`` has passed since the last cut.

A pool never opens (or hands out) more connections than the limit; connections above it are
closed as their callers give them back.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["Concurrency"]


@attrs.define
class Concurrency:
    """The adaptive connection limit of one pool (not thread-safe: the pool's lock serialises).

    Attributes:
        ceiling: the configured ``max_connections``.
        floor: the limit is never cut below this.
        cooldown: seconds after a cut during which throttling replies do not cut again and
            good replies do not grow the limit.
        limit: the number of connections allowed in use now.
        cuts: how many times the limit was cut (for reports and tests).
    """

    ceiling: int
    floor: int = 1
    cooldown: float = 1.0
    limit: int = attrs.field(init=False)
    cuts: int = attrs.field(init=False, default=0)
    _credit: float = attrs.field(init=False, default=0.0)
    _last_cut: float = attrs.field(init=False, default=-math.inf)

    def __attrs_post_init__(self) -> None:
        self.floor = max(1, min(self.floor, self.ceiling))
        self.limit = self.ceiling

    @property
    def reduced(self) -> bool:
        """True while the limit is below the ceiling."""
        return self.limit < self.ceiling

    def throttled(self, now: float) -> bool:
        """The server signalled throttling; returns ``True`` when the limit was cut."""
        if self.limit <= self.floor:  # still throttled at the floor: hold off the regrowth
            self._last_cut = now
            self._credit = 0.0
            return False
        if now - self._last_cut < self.cooldown:
            return False
        self.limit = max(self.floor, self.limit // 2)
        self._credit = 0.0
        self._last_cut = now
        self.cuts += 1
        return True

    def succeeded(self, now: float, count: int = 1) -> bool:
        """``count`` messages went through unthrottled; returns ``True`` when the limit grew."""
        if self.limit >= self.ceiling or now - self._last_cut < self.cooldown:
            return False
        self._credit += count / self.limit
        grew = False
        while self._credit >= 1.0 and self.limit < self.ceiling:
            self._credit -= 1.0
            self.limit += 1
            grew = True
        return grew
