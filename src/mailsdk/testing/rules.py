"""Scripted behaviour of the test server: refusals, 4xx bursts, 421, drops, delays, stalls.

Layer: L7 (``mailsdk.testing``). Pure bookkeeping: no I/O here; the server asks
:meth:`Script.match` before it handles each command and does what the rule says.

A rule names a command verb (``"MAIL"``, ``"RCPT"``, ``"DATA"``, ``"BDAT"``, ``"EHLO"``,
``"AUTH"``, ``"STARTTLS"``, ``"RSET"``, ``"NOOP"``...) or one of three points in a session that
are not commands:

* ``"GREETING"``: the 220 banner (replace it, delay it, or close instead);
* ``"BODY"``: the message content, after the 354 (or the first BDAT chunk): drop or stall
  there, *before* the final dot;
* ``"END-OF-DATA"``: the reply after the final dot (or ``BDAT LAST``); with LMTP the rule's
  ``argument`` picks the recipient whose reply it replaces.
"""

from __future__ import annotations

import re
import threading
import typing

import attrs

__all__ = ["PSEUDO_COMMANDS", "Rule", "Script"]

PSEUDO_COMMANDS: typing.Final = frozenset({"GREETING", "BODY", "END-OF-DATA"})
_REPLY: typing.Final = re.compile(r"[2-5][0-9][0-9]([ -].*)?", re.DOTALL)
_ADDRESS: typing.Final = re.compile(r"<([^>]*)>")


def _upper(value: str) -> str:
    return value.upper()


def _check_reply(rule: Rule, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    for line in value.split("\r\n"):
        if not _REPLY.fullmatch(line) or "\r" in line or "\n" in line:
            raise ValueError(f"reply {value!r} is not an SMTP reply ('550 5.1.1 text')")


@attrs.frozen
class Rule:
    """What the server does instead of (or before) handling one command normally.

    Attributes:
        command: the verb or pseudo-command the rule applies to (see the module docstring).
        reply: the reply to send instead of handling the command (several lines joined with
            CRLF); ``None`` handles it normally (or sends nothing when ``close``).
        argument: only when the command's address (``MAIL``/``RCPT``: inside ``<...>``, else
            the argument; for LMTP ``END-OF-DATA`` the recipient) equals this, ignoring case.
        times: how many times the rule fires (``None``: every time).
        delay: seconds to wait before replying (slow server).
        close: close the connection after the reply; without a reply, a drop.
        stall: after handling the command, stop reading from the client for good (its writes
            back up until it gives up).
    """

    command: str = attrs.field(converter=_upper)
    reply: str | None = attrs.field(default=None, validator=_check_reply)
    argument: str | None = None
    times: int | None = None
    delay: float = 0.0
    close: bool = False
    stall: bool = False

    def matches(self, command: str, argument: str | None) -> bool:
        """Whether this rule applies to ``command`` with ``argument``."""
        if self.command != command:
            return False
        if self.argument is None:
            return True
        if argument is None:
            return False
        found = _ADDRESS.search(argument)
        subject = found.group(1) if found else argument.strip()
        return subject.lower() == self.argument.lower()


class Script:
    """The server's rules, first match wins; a rule with ``times`` retires when used up."""

    def __init__(self) -> None:
        self._rules: list[list[typing.Any]] = []  # [rule, remaining]
        self._lock = threading.Lock()

    def add(self, rule: Rule) -> Rule:
        """Append a rule (rules added earlier take precedence)."""
        if rule.times is not None and rule.times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        with self._lock:
            self._rules.append([rule, rule.times])
        return rule

    def match(self, command: str, argument: str | None = None) -> Rule | None:
        """The first live rule for ``command``/``argument`` (and count it as used)."""
        with self._lock:
            for entry in self._rules:
                rule, remaining = entry
                if remaining == 0 or not rule.matches(command, argument):
                    continue
                if remaining is not None:
                    entry[1] = remaining - 1
                return typing.cast("Rule", rule)
        return None

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules still live, in order."""
        with self._lock:
            return tuple(r for r, remaining in self._rules if remaining != 0)
