"""Header injection guard: the header block that reaches the wire is exactly the headers given.

Layer: L3 flows (sans-IO). May import L0 and the stdlib ``email`` package (pure). Must never
import transport, telemetry or client, nor any I/O module of the standard library.

A header value holding a CR or LF can add a header line (``To: b@example.com\\r\\nBcc: x``, which
also adds an envelope recipient), or end the header block early (a trailing CRLF moves every
later header into the body); a NUL reaches the wire as is. The stdlib generators catch only
some of this (and, depending on the Python version and policy, raise ``HeaderParseError`` or
``HeaderWriteError``, or nothing). So every header is folded exactly as the generator will fold
it and the result is checked by :func:`check_header_block`, a pure function over bytes: CRLF
line ends only, no NUL, each line a ``name: value`` field (RFC 5322 §2.2, §3.6.8 ``field-name``)
or a non-blank folded continuation (§2.2.3), and no empty line inside the block.

Any stdlib ``email`` exception raised while folding becomes
:class:`~mailsdk.errors.InvalidInputError` naming the header. Nothing in the check depends on
where it is called from, so the message preparation pipeline can call it wherever it folds.
"""

from __future__ import annotations

import contextlib
import email.errors
import email.message
import email.policy
import re
import typing
from collections.abc import Generator

from mailsdk.errors import InvalidInputError

__all__ = [
    "check_header_block",
    "check_message_headers",
    "check_raw_header_block",
    "email_errors",
    "header_line",
]

# RFC 5322 §3.6.8: field-name = 1*ftext; ftext = %d33-57 / %d59-126 (printable, no colon).
_FIELD_NAME: typing.Final = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_WSP: typing.Final = (b" ", b"\t")
# What a one-line value must not hold: C0 controls but tab, DEL, C1 controls, U+2028/U+2029.
_CONTROLS: typing.Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _named(name: str | None) -> str:
    return f"header {name!r}" if name is not None else "the header block"


def _field_name(line: bytes) -> str | None:
    """The field name of a ``name: value`` line, or ``None`` when the line is no field."""
    name, colon, _value = line.partition(b":")
    if not colon or _FIELD_NAME.fullmatch(name) is None:
        return None
    return name.decode("ascii")


def check_header_block(block: bytes) -> None:
    """Check a flattened header block (without the empty line that ends it).

    Args:
        block: the header lines as they will be written, each ending with CRLF.

    Raises:
        InvalidInputError: a bare CR or LF, a NUL, a line that is neither a header field nor a
            folded continuation (a line break in a value followed by text), an empty or blank
            line inside the block (it would end the headers early), or a block that does not
            end with CRLF. The error names the header concerned, never its value.
    """
    if not block:
        return
    if not block.endswith(b"\r\n"):
        raise InvalidInputError("the header block does not end with CRLF")
    current: str | None = None
    for line in block[:-2].split(b"\r\n"):
        if line[:1] in _WSP:
            if current is None:
                raise InvalidInputError("the header block starts with a continuation line")
            if not line.strip(b" \t"):
                raise InvalidInputError(
                    f"{_named(current)} contains a blank line (it would end the headers early)"
                )
        elif not line:
            raise InvalidInputError(
                f"{_named(current)} contains an empty line (it would end the headers early)"
            )
        else:
            name = _field_name(line)
            if name is None:
                where = _named(current) if current is not None else "a header name"
                raise InvalidInputError(
                    f"{where} contains a line break followed by a line that is not a header "
                    "field (header injection)"
                )
            current = name
        if b"\r" in line or b"\n" in line:
            raise InvalidInputError(f"{_named(current)} contains a bare CR or LF")
        if b"\x00" in line:
            raise InvalidInputError(f"{_named(current)} contains a NUL character")


def header_line(name: str, value: str) -> bytes:
    """One ``name: value`` header line, CRLF-terminated, for a header added in front of a
    message (trace context): the value must be one line, since any line break in it would
    add a well-formed header line of its own that no syntax check can tell apart.

    Raises:
        InvalidInputError: the name is not an RFC 5322 field name, or the value holds a CR,
            LF, NUL or other control character (a tab excepted). The error never quotes the
            value.
    """
    given: tuple[object, object] = (name, value)  # a propagator's types are not trusted
    if not isinstance(given[0], str) or _FIELD_NAME.fullmatch(name.encode("utf-8")) is None:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(
            f"invalid header name {name!r}: printable ASCII without colon or space "
            "(RFC 5322 §3.6.8)"
        )
    if not isinstance(given[1], str) or _CONTROLS.search(value) is not None:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(
            f"header {name!r} must be a one-line str without control characters"
        )
    return f"{name}: {value}\r\n".encode("ascii", "replace")


def check_raw_header_block(data: bytes) -> None:
    """Check the header section of a raw (``bytes``/``str``) message with CRLF line ends.

    A raw message is sent as given, so only what no header may ever hold is refused: a NUL in
    the lines before the first empty line.

    Raises:
        InvalidInputError: a NUL in the header section.
    """
    if data.startswith(b"\r\n"):
        return  # no headers at all
    end = data.find(b"\r\n\r\n")
    # Searched in place (no copy of the header section; this runs for every raw message).
    if data.find(b"\x00", 0, len(data) if end == -1 else end) != -1:
        raise InvalidInputError("the message headers contain a NUL character")


#: Every exception the stdlib ``email`` package raises for a message it cannot handle
#: (``HeaderParseError``, ``HeaderWriteError`` on newer Pythons, ``MessageDefect`` subclasses
#: raised by strict policies...).
EMAIL_ERRORS: typing.Final[tuple[type[Exception], ...]] = (
    email.errors.MessageError,
    email.errors.MessageDefect,
)


#: Folding also fails with these for values of the wrong type (a legacy ``Header`` holding
#: bytes, an object without ``fold``) or a policy's own refusal.
_FOLD_ERRORS: typing.Final[tuple[type[Exception], ...]] = (
    *EMAIL_ERRORS,
    ValueError,
    TypeError,
    AttributeError,
)


@contextlib.contextmanager
def email_errors(what: str) -> Generator[None, None, None]:
    """Turn a stdlib ``email`` exception raised inside the block into ``InvalidInputError``.

    Args:
        what: what was being done, for the message (e.g. ``"header 'To'"``).
    """
    try:
        yield
    except EMAIL_ERRORS as exc:
        # The stdlib's message quotes the value; the chained exception keeps it for debugging.
        raise InvalidInputError(f"{what}: {type(exc).__name__}") from exc


def _check_policy(policy: email.policy.Policy) -> email.policy.Policy:
    # Fold as the wire will see it: CRLF line ends; raw UTF-8 allowed so that non-ASCII text
    # never fails here (the generator's RFC 2047 encoding only changes what the words look like).
    if isinstance(policy, email.policy.EmailPolicy):
        return policy.clone(linesep="\r\n", utf8=True)
    return policy.clone(linesep="\r\n")


def check_message_headers(
    msg: email.message.Message, *, policy: email.policy.Policy | None = None
) -> None:
    """Fold every header of ``msg`` and of each of its parts, and check each one.

    Bcc is checked too: it is stripped before sending, but its addresses join the envelope.

    Args:
        msg: the message.
        policy: the policy the generator writes the message with, when known: the headers are
            then folded exactly as they will be sent. A policy other than the message's own
            folds differently (``SMTPUTF8`` splits a compat32 value at U+2028, where the
            message's compat32 policy RFC 2047-encodes it), so a check with the wrong policy
            can pass an injected line.

    Raises:
        InvalidInputError: see :func:`check_header_block`; also any stdlib ``email`` error (or
            a value of the wrong type) raised while folding a header, naming the header.
    """
    policy = _check_policy(msg.policy) if policy is None else policy.clone(linesep="\r\n")
    for part in msg.walk():
        for name, value in part.raw_items():
            if _FIELD_NAME.fullmatch(str(name).encode("utf-8")) is None:
                raise InvalidInputError(
                    f"invalid header name {name!r}: printable ASCII without colon or space "
                    "(RFC 5322 §3.6.8)"
                )
            try:
                folded = policy.fold_binary(name, value)
            except _FOLD_ERRORS as exc:
                # The stdlib's message quotes the value (the cause keeps it for debugging).
                raise InvalidInputError(
                    f"header {name!r} cannot be written ({type(exc).__name__}): a CR, LF or "
                    "another character its policy refuses"
                ) from exc
            check_header_block(folded)
            first, *continued = folded[:-2].split(b"\r\n")
            written = _field_name(first)
            if written is None or written.lower() != name.lower():
                raise InvalidInputError(f"header {name!r} is not written as its own field")
            if any(line[:1] not in _WSP for line in continued):
                raise InvalidInputError(
                    f"header {name!r} contains a line break followed by another header field "
                    "(header injection)"
                )
