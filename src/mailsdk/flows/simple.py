"""Single-command flows: NOOP, RSET, VRFY, EXPN, HELP, QUIT and a raw command.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol`` and L0 only.
"""

from __future__ import annotations

from collections.abc import Generator

from mailsdk.errors import CommandRefused
from mailsdk.flows.actions import Action, Close, Phase, submit_one
from mailsdk.protocol.commands import Command, Quit
from mailsdk.protocol.reply import Reply

__all__ = ["checked", "quit_session", "raw"]


def checked(
    command: Command, *, accept_intermediate: bool = False
) -> Generator[Action, object, Reply]:
    """Send ``command``; a 4xx/5xx reply raises :class:`CommandRefused` carrying the reply.

    VRFY's 252 ("cannot verify, will accept") is a 2xx and therefore returned.
    """
    reply = yield from submit_one(command)
    if reply.is_positive or (accept_intermediate and reply.is_intermediate):
        return reply
    raise CommandRefused(reply, command.verb)


def raw(command: Command) -> Generator[Action, object, Reply]:
    """Send ``command`` and return whatever the server answered (no judgement)."""
    return (yield from submit_one(command))


def quit_session() -> Generator[Action, object, Reply]:
    """QUIT, then close the stream whatever the answer."""
    reply = yield from submit_one(Quit(), Phase.QUIT)
    yield Close()
    return reply
