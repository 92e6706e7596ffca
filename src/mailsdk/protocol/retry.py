"""The retry classification table: what a failure reply means for sending the message again.

Layer: L1 (sans-IO protocol core). May import L0 and attrs only; pure functions of the reply code,
the RFC 3463 enhanced status and (for the few servers that say it only in words) the reply text.

One table decides, so :attr:`mailsdk.protocol.reply.Reply.is_retryable`,
:attr:`mailsdk.errors.MailError.is_retryable` and the batch engine can never disagree:

* 2xx and 3xx are not failures: nothing to retry.
* 5xx is permanent: never retried, whatever the enhanced status says (RFC 5321 §4.2.1; a 5xx
  with a ``4.x.x`` status is a contradiction, and the basic code wins).
* 4xx is transient: retried. Some 4xx replies also say *how*:

  ========================================  =========================================
  reply                                     meaning for the sender
  ========================================  =========================================
  421 (any), 4.4.x network/routing          retry on a new connection
  4.7.x policy/security (421, 450, 451,     the server is throttling: slow down
  454), 4.4.5 congestion, 4.3.2 "not
  accepting" (Office 365 432/452 4.3.2)
  452 "too many ..." (no 4.5.3)             throttling (messages or connections)
  452 4.5.3 / 452 "too many recipients"     recipients per transaction exceeded: send
                                            the rest in another transaction at once
  4.2.2 mailbox full, 4.2.x, 4.3.1 storage  retry later (per recipient)
  ========================================  =========================================
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["RetryAdvice", "ReplyVerdict", "classify_reply"]


class RetryAdvice(enum.Enum):
    """How a failure should be retried (see the module's table)."""

    #: Not a failure (2xx/3xx): nothing to do.
    NONE = "none"
    #: A permanent failure (5xx, unknown codes): never retry.
    NEVER = "never"
    #: A transient failure: retry after the usual backoff.
    LATER = "later"
    #: The server is throttling this client: back off and slow every sender down.
    SLOW_DOWN = "slow_down"
    #: Too many recipients in one transaction: send the rest in another transaction now.
    SPLIT = "split"


@attrs.frozen
class ReplyVerdict:
    """The classification of one reply.

    Attributes:
        advice: the :class:`RetryAdvice`.
        reconnect: the connection is (or should be treated as) finished: 421, or a 4.4.x
            network problem; a retry goes through a new connection.
        reason: a short description of the table row that matched (for logs and reports).
    """

    advice: RetryAdvice
    reconnect: bool = False
    reason: str = ""

    @property
    def retryable(self) -> bool:
        """True when sending again may succeed (LATER, SLOW_DOWN or SPLIT)."""
        return self.advice in (RetryAdvice.LATER, RetryAdvice.SLOW_DOWN, RetryAdvice.SPLIT)

    @property
    def throttled(self) -> bool:
        """True when the server asked the client to slow down."""
        return self.advice is RetryAdvice.SLOW_DOWN


def _too_many(text: str) -> bool:
    return "too many" in text or "rate limit" in text or "limit exceeded" in text


def classify_reply(
    code: int, status: tuple[int, int, int] | None = None, text: str = ""
) -> ReplyVerdict:
    """Classify a reply for retrying (the module's table).

    Args:
        code: the three-digit reply code.
        status: the RFC 3463 enhanced status as ``(class, subject, detail)``, if any.
        text: the reply text (only a few phrases are looked at, case-insensitively).

    Returns:
        The :class:`ReplyVerdict`.
    """
    if 200 <= code < 400:
        return ReplyVerdict(RetryAdvice.NONE, reason="not a failure")
    if not 400 <= code < 500:
        return ReplyVerdict(RetryAdvice.NEVER, reason="permanent failure")
    lowered = text.lower()
    subject, detail = (status[1], status[2]) if status is not None and status[0] == 4 else (-1, -1)
    reconnect = code == 421 or subject == 4
    if (subject, detail) == (5, 3) or (code == 452 and "too many recipients" in lowered):
        return ReplyVerdict(RetryAdvice.SPLIT, reconnect, "too many recipients per transaction")
    if subject == 7:
        return ReplyVerdict(RetryAdvice.SLOW_DOWN, reconnect, "policy or rate limit (4.7.x)")
    if (subject, detail) == (3, 2):
        return ReplyVerdict(RetryAdvice.SLOW_DOWN, reconnect, "system not accepting (4.3.2)")
    if (subject, detail) == (4, 5):
        return ReplyVerdict(RetryAdvice.SLOW_DOWN, reconnect, "system congestion (4.4.5)")
    if code in (421, 451, 452) and _too_many(lowered):
        return ReplyVerdict(RetryAdvice.SLOW_DOWN, reconnect, "too many (rate limit)")
    if code == 421:
        return ReplyVerdict(RetryAdvice.LATER, True, "service closing the channel (421)")
    if subject == 4:
        return ReplyVerdict(RetryAdvice.LATER, True, "network or routing (4.4.x)")
    if subject == 2:
        return ReplyVerdict(RetryAdvice.LATER, reconnect, "mailbox status (4.2.x)")
    return ReplyVerdict(RetryAdvice.LATER, reconnect, "transient failure (4xx)")
