"""Send results: what happened to each recipient of a transaction.

Layer: L3 flows (sans-IO, pure values). May import ``mailsdk.protocol`` and L0 only.

Partial acceptance is a *result*, not an exception (docs/architecture.md, "Decisions"): a message
delivered to two of three recipients returns a :class:`SendResult` whose ``refused`` names the third
with its reply.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from mailsdk.protocol.reply import Reply

__all__ = ["SendResult"]


def _no_replies() -> dict[str, Reply]:
    return {}


def _freeze(m: Mapping[str, Reply]) -> Mapping[str, Reply]:
    return dict(m)


@attrs.frozen(kw_only=True)
class SendResult:
    """The outcome of one mail transaction.

    Attributes:
        sender: the reverse-path used in MAIL FROM.
        accepted: recipients the server accepted, in the order given.
        refused: refused recipients mapped to the server's reply (RCPT refusals, and with LMTP
            the per-recipient refusals after end of data).
        reply: the final reply (for SMTP the end-of-data reply, usually carrying a queue id;
            for LMTP the last per-recipient reply).
        recipient_replies: every recipient mapped to its reply (RCPT reply, or with LMTP the
            per-recipient delivery reply for accepted ones).
        size: the number of message bytes sent (after line-ending canonicalisation).
        lmtp: ``True`` when the per-recipient outcomes come from an LMTP end-of-data.
    """

    sender: str
    accepted: tuple[str, ...]
    refused: Mapping[str, Reply] = attrs.field(factory=_no_replies, converter=_freeze)
    reply: Reply
    recipient_replies: Mapping[str, Reply] = attrs.field(factory=_no_replies, converter=_freeze)
    size: int
    lmtp: bool = False

    @property
    def ok(self) -> bool:
        """True when every recipient was accepted."""
        return not self.refused

    @property
    def queue_id(self) -> str | None:
        """The queue id the server reported, when the final reply text carries one.

        Recognises the common forms ``250 2.0.0 Ok: queued as ABC123`` (Postfix),
        ``250 OK id=1abc-...`` (Exim) and ``250 2.0.0 <id> Message accepted`` (others); ``None``
        when nothing that looks like an id is found.
        """
        text = self.reply.text
        for marker in ("queued as ", "id="):
            idx = text.find(marker)
            if idx >= 0:
                rest = text[idx + len(marker) :].split()
                return rest[0] if rest else None
        words = text.split()
        if words and self.reply.enhanced is not None and words[0] == str(self.reply.enhanced):
            words = words[1:]
        if len(words) >= 3 and [w.lower() for w in words[1:3]] == ["message", "accepted"]:
            return words[0]  # sendmail: "250 2.0.0 x3KFaQ8e012345 Message accepted for delivery"
        return None
