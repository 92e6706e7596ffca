"""When ``send_many`` takes the express lane, and the lane's deadlines.

Layer: L5 client (private, pure: no I/O). May import L0-L4.

:class:`~mailsdk.flows.express.ExpressRun` is ``deliver_many``'s pipelined schedule without the
per-command machinery. A run takes it when nothing needs that machinery: SMTP (LMTP's
per-recipient replies are paired by the connection), PIPELINING offered and wanted, telemetry
off and the wire log below DEBUG (both are per command), and an idle session. Otherwise the
general flow runs; the outcomes are the same (the two are tested against each other).
"""

from __future__ import annotations

import logging
import time
import typing
from collections.abc import Callable

from mailsdk.client._policy import Claimable
from mailsdk.client._pump import Pump, wire_log, write_timeout_error
from mailsdk.errors import LocalProtocolError, MailTimeout, ReadTimeout, WriteTimeout
from mailsdk.esmtp import Capabilities
from mailsdk.flows import Delivery, Phase, Pull
from mailsdk.flows.express import ExpressRun, Want
from mailsdk.flows.judge import ParameterCache
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.state import ClientState

if typing.TYPE_CHECKING:
    from mailsdk.config import ClientConfig, Timeouts

__all__ = ["ENABLED", "PULLS", "LaneClock", "OneItem", "Source", "open_lane"]

#: Whether runs may take the express lane (tests turn it off to run the general flow alike).
ENABLED = True

#: The ``Pull`` for each :class:`~mailsdk.flows.express.Want` (built once).
PULLS: typing.Final = {Want.ITEM: Pull(True), Want.UNPREPARED: Pull(False)}


class Driver(Claimable, typing.Protocol):
    """What :func:`open_lane` needs of a driver: ``closed`` and ``busy``, and its pump."""

    pump: Pump


def open_lane(
    driver: Driver,
    config: ClientConfig,
    capabilities: Capabilities,
    *,
    tls_active: bool,
    cache: ParameterCache,
    single: bool = False,
) -> ExpressRun | None:
    """An express run for this session now, or ``None`` when the general flow must run
    (``single``: one message, by the single-message flow's RSET rules)."""
    opts = config.transaction
    if not ENABLED or config.dialect is not Dialect.SMTP or driver.closed or driver.busy:
        return None  # (a closed or busy session: the general path raises the right error)
    pump = driver.pump
    if not (opts.pipelining and capabilities.pipelining) or not pump.silent:
        return None
    if wire_log.isEnabledFor(logging.DEBUG) or not pump.idle:
        return None
    conn = pump.connection
    if conn.state is not ClientState.READY or conn.closing:
        return None
    return ExpressRun(
        conn.lend_parser(),
        capabilities,
        opts,
        tls_active=tls_active,
        cache=cache,
        reset_after_refusal=single,
    )


class Source(typing.Protocol):
    """Where an express run's items come from (``_sending.Feed``, or :class:`OneItem`)."""

    @property
    def asynchronous(self) -> bool:
        """Pulling may wait (buffered output is written first)."""
        ...

    def pull(self, action: Pull) -> Delivery | None:
        """The next item, or ``None`` when there is no more."""
        ...

    async def apull(self, action: Pull) -> Delivery | None:
        """:meth:`pull`, from an asynchronous source too."""
        ...


class OneItem:
    """The source of a one-message run: ``send_message`` on the express lane."""

    asynchronous = False

    def __init__(self, item: Delivery) -> None:
        self._item: Delivery | None = item

    def pull(self, action: Pull) -> Delivery | None:
        """The message, once; then ``None``."""
        item, self._item = self._item, None
        return item

    async def apull(self, action: Pull) -> Delivery | None:
        """:meth:`pull` (never waits)."""
        return self.pull(action)


def _seconds(limit: float | None) -> str:
    return "no limit" if limit is None else f"{limit:g} s"


class LaneClock:
    """The reply deadlines of an express run: per command, as the pump's (a deadline starts
    when the runner first waits after a write; each reply paired restarts it for the next)."""

    def __init__(
        self, lane: ExpressRun, timeouts: Timeouts, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lane = lane
        self.timeouts = timeouts
        self._clock = clock
        self._deadline: float | None = None
        #: A deadline runs for the reply awaited; the runner clears it after every write (the
        #: deadline starts at the next wait).
        self.waiting = False
        self._phase = Phase.COMMAND
        # The two phases an express run waits in (ExpressRun.phase), looked up once.
        self._command_limit = timeouts.for_phase(Phase.COMMAND)
        self._data_limit = timeouts.for_phase(Phase.DATA)

    def remaining(self) -> float | None:
        """Seconds left for the reply awaited now.

        Raises:
            ReadTimeout: the deadline has passed.
        """
        lane = self._lane
        if lane.progressed or not self.waiting:
            lane.progressed = False
            phase = lane.phase
            if phase is None:
                raise LocalProtocolError("the express run waits for a reply that is not owed")
            self._phase = phase
            limit = self._data_limit if phase is Phase.DATA else self._command_limit
            self._deadline = None if limit is None else self._clock() + limit
            self.waiting = True
            if limit is None or limit > 0:
                return limit
            raise self.read_timed_out()
        if self._deadline is None:
            return None
        left = self._deadline - self._clock()
        if left <= 0:
            raise self.read_timed_out()
        return left

    def read_timed_out(self) -> ReadTimeout:
        """The error for the deadline that passed: its phase and what was awaited."""
        limit = self.timeouts.for_phase(self._phase)
        return ReadTimeout(
            f"{self._lane.owed} did not come within the {self._phase.value} deadline "
            f"({_seconds(limit)})",
            phase=self._phase.value,
        )

    def write_timed_out(self, error: MailTimeout) -> WriteTimeout:
        """The error for a write that did not finish."""
        return write_timeout_error(self.timeouts, error, content=self._lane.content_pending)
