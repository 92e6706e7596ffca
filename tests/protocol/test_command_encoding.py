"""Commands refuse text that cannot be encoded or that Unicode-aware servers split into lines."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests._support.conversation import Conversation, replied

from mailsdk.errors import (
    InvalidInputError,
)
from mailsdk.protocol import (
    ClientState,
    Command,
    Ehlo,
    Expn,
    Help,
    MailFrom,
    Noop,
    Raw,
    RcptTo,
    Vrfy,
)

#: Lone surrogates (from ``surrogateescape``-decoded headers or file names) cannot be UTF-8
#: encoded; C1 controls (NEL U+0085), LINE SEPARATOR and PARAGRAPH SEPARATOR end a line for any
#: server that splits decoded text with ``str.splitlines()`` (RFC 5198 §2 forbids them).
BAD_CHARACTERS = ["\udcff", "\ud800", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("bad", BAD_CHARACTERS)
def test_unencodable_or_line_breaking_characters_are_refused(bad: str) -> None:
    builders: list[Callable[[], Command]] = [
        lambda: MailFrom(f"a{bad}b@example.org"),
        lambda: MailFrom(f'"a{bad}b"@example.org'),
        lambda: RcptTo(f'"x{bad}"@example.com'),
        lambda: RcptTo("b@example.com", params=(f"X-P=v{bad}",)),
        lambda: Ehlo(f"me{bad}.example"),
        lambda: Noop(f"x{bad}y"),
        lambda: Vrfy(f"x{bad}y"),
        lambda: Expn(f"x{bad}y"),
        lambda: Help(f"x{bad}y"),
        lambda: Raw(f"NOOP{bad}RSET"),
    ]
    for build in builders:
        with pytest.raises(InvalidInputError):
            build().to_bytes()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), min_size=1))
def test_a_command_that_builds_always_encodes(text: str) -> None:
    # Whatever is accepted at construction must serialise (no UnicodeEncodeError at send time)
    # and produce exactly one line.
    for build in (lambda: Noop(text), lambda: Raw("NOOP " + text), lambda: RcptTo(f'"{text}"@x')):
        try:
            command = build()
        except InvalidInputError:
            continue
        wire = command.to_bytes()
        assert wire.count(b"\n") == 1 and wire.endswith(b"\r\n")
        assert wire.decode("utf-8").count("\r") == 1
        assert len(wire.decode("utf-8").splitlines()) == 1


def test_a_failing_send_changes_nothing() -> None:
    class Broken(Noop):
        def to_bytes(self) -> bytes:
            raise InvalidInputError("cannot encode")

    conv = Conversation()
    conv.hello()
    with pytest.raises(InvalidInputError):
        conv.conn.send(Broken())
    assert conv.conn.pending == 0
    assert conv.conn.state is ClientState.READY
    conv.client(Noop(), b"NOOP\r\n")
    conv.server(b"250 ok\r\n", replied(Noop(), 250, "ok"))
