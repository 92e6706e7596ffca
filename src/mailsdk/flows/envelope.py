"""Message → envelope: sender, recipients (Bcc stripped), flattening and the MAIL options it needs.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0; the stdlib
``email`` package is pure and allowed. Must never import transport, telemetry or client.

The envelope rules are smtplib's ``send_message`` rules (so migrating changes nothing):

* With exactly one ``Resent-Date`` header block, the ``Resent-*`` headers are used; with more than
  one, the message is ambiguous and :class:`~mailsdk.errors.InvalidInputError` is raised.
* The sender is ``(Resent-)Sender`` if present, else ``(Resent-)From``.
* The recipients are ``(Resent-)To``, ``(Resent-)Bcc`` and ``(Resent-)Cc``.
* ``Bcc`` and ``Resent-Bcc`` are never transmitted.
* SMTPUTF8 is needed when any envelope address is non-ASCII; the message is then flattened with
  ``utf8=True`` (RFC 6532 headers).
* ``BODY=8BITMIME`` is requested when the flattened message has any byte over 0x7F.
"""

from __future__ import annotations

import copy
import email.generator
import email.message
import email.policy
import email.utils
import io
import typing
from collections.abc import Iterator, Sequence

import attrs

from mailsdk.errors import InvalidInputError, MailError
from mailsdk.flows.headers import (
    check_header_block,
    check_message_headers,
    check_raw_header_block,
    email_errors,
)
from mailsdk.protocol.address import needs_smtputf8
from mailsdk.protocol.body import canonicalize_line_endings

__all__ = [
    "ContentStream",
    "Envelope",
    "PreparedMessage",
    "RawMemo",
    "envelope_from_message",
    "prepare_message",
    "prepare_raw",
    "resent_prefix",
]


@attrs.frozen
class Envelope:
    """The SMTP envelope of a message."""

    sender: str
    recipients: tuple[str, ...]


class ContentStream(typing.Protocol):
    """Message content read piece by piece (a file, a binary stream, an iterable of chunks),
    never held whole. Line endings need not be canonical: the connection's encoders make them
    CRLF on the way out, carrying state across pieces."""

    @property
    def size(self) -> int | None:
        """The size with canonical CRLF line endings, when known before sending (``SIZE=``)."""
        ...

    @property
    def consumed(self) -> int:
        """How many bytes the pieces read so far held."""
        ...

    def pieces(self) -> Iterator[bytes]:
        """The content, in bounded pieces; iterated once, when the message is sent.

        Raises:
            InvalidInputError: the source cannot be read or holds something other than bytes.
        """
        ...


@attrs.frozen
class PreparedMessage:
    """A message ready for the wire: the output of the preparation pipeline.

    Attributes:
        envelope: sender and recipients.
        data: the message bytes held in memory, with CRLF line endings (not yet dot-stuffed);
            ``b""`` when the content is streamed.
        smtputf8: the envelope or headers need SMTPUTF8 (RFC 6531).
        eight_bit: the content has bytes over 0x7F (needs 8BITMIME, RFC 6152); ``None`` when a
            streamed source could not be scanned beforehand.
        stream: the streamed content, if any (``data`` is then unused).
        headers: header lines the preparation added in front of the content (trace context;
            later a DKIM signature), CRLF-terminated: the one place they exist.
    """

    envelope: Envelope
    data: bytes
    smtputf8: bool
    eight_bit: bool | None
    stream: ContentStream | None = None
    headers: bytes = b""
    #: A raw message's bytes as given, when canonicalising changed them: ``BODY=BINARYMIME``
    #: content is sent exactly as given (RFC 3030 §3).
    original: bytes | None = attrs.field(default=None, eq=False, repr=False)
    #: ``data`` is known to have canonical CRLF line endings already (a raw message, just
    #: canonicalised), so the DATA encoder need not scan it again.
    canonical: bool = attrs.field(default=False, eq=False, repr=False)

    @property
    def declared_size(self) -> int | None:
        """The size announced with ``SIZE=`` (RFC 1870), or ``None`` when unknown."""
        if self.stream is None:
            return len(self.headers) + len(self.data)
        size = self.stream.size
        return None if size is None else len(self.headers) + size

    @property
    def size(self) -> int:
        """The content size in bytes: the declared size, or for a stream of unknown size the
        bytes read so far (all of them once it was sent)."""
        if self.stream is None:  # in memory (declared_size's own case, without the call)
            return len(self.headers) + len(self.data)
        declared = self.declared_size
        if declared is not None:
            return declared
        assert self.stream is not None
        return len(self.headers) + self.stream.consumed

    @property
    def binary_declared_size(self) -> int | None:
        """The ``SIZE=`` for ``BODY=BINARYMIME`` content (sent as given, not canonicalised);
        ``None`` for a stream, whose size was measured canonicalised."""
        if self.stream is not None:
            return None
        return len(self.headers) + len(self.original if self.original is not None else self.data)

    def pieces(self, *, binary: bool = False) -> Iterator[bytes]:
        """The content, piece by piece: the added headers, then the message; ``binary`` gives
        a raw message exactly as given, for ``BODY=BINARYMIME``."""
        if self.headers:
            yield self.headers
        if self.stream is None:
            yield self.original if binary and self.original is not None else self.data
        else:
            yield from self.stream.pieces()

    def with_headers(self, lines: bytes) -> PreparedMessage:
        """The same message with ``lines`` (CRLF-terminated header lines) added in front."""
        return attrs.evolve(self, headers=lines + self.headers)


def _addresses(values: Sequence[str]) -> list[str]:
    return [addr for _name, addr in email.utils.getaddresses([str(v) for v in values]) if addr]


def resent_prefix(msg: email.message.Message) -> str:
    """``"Resent-"`` when the message has one Resent- block, else ``""`` (RFC 5322 §3.6.6).

    Raises:
        InvalidInputError: (a ``ValueError``) more than one ``Resent-Date`` header.
    """
    resent = msg.get_all("Resent-Date")
    if resent is None:
        return ""
    if len(resent) == 1:
        return "Resent-"
    raise InvalidInputError("message has more than one 'Resent-' header block")


def _sender_of(msg: email.message.Message, prefix: str) -> str:
    header = msg[prefix + "Sender"] if prefix + "Sender" in msg else msg[prefix + "From"]
    senders = _addresses([header]) if header is not None else []
    if not senders:
        raise InvalidInputError(f"message has no {prefix}From or {prefix}Sender address")
    return senders[0]


def _recipients_of(msg: email.message.Message, prefix: str) -> tuple[str, ...]:
    recipients: list[str] = []
    for field in ("To", "Bcc", "Cc"):
        recipients.extend(_addresses(msg.get_all(prefix + field, [])))
    if not recipients:
        raise InvalidInputError("message has no recipients (To, Cc or Bcc)")
    return tuple(recipients)


def envelope_from_message(msg: email.message.Message) -> Envelope:
    """Derive the envelope from the message headers (smtplib's rules, see module docstring).

    Raises:
        InvalidInputError: several Resent- blocks, or no sender/recipient could be found.
    """
    prefix = resent_prefix(msg)
    return Envelope(_sender_of(msg, prefix), _recipients_of(msg, prefix))


def _flatten(msg: email.message.Message, *, utf8: bool) -> bytes:
    stripped = copy.copy(msg)
    del stripped["Bcc"]
    del stripped["Resent-Bcc"]
    policy = msg.policy
    if utf8:
        policy = (
            policy.clone(utf8=True)
            if isinstance(policy, email.policy.EmailPolicy)
            else email.policy.SMTPUTF8
        )
    buf = io.BytesIO()
    # typeshed types a generator made with an EmailPolicy as taking only EmailMessage; the
    # stdlib flattens any Message with it (legacy Message objects included).
    generator = typing.cast(
        "email.generator.BytesGenerator[email.message.Message]",
        email.generator.BytesGenerator(buf, policy=policy),
    )
    generator.flatten(stripped, linesep="\r\n")
    # Checked again with the policy that wrote it: a legacy message flattened with SMTPUTF8
    # (an international envelope) folds at U+2028 and friends where its own policy did not.
    check_message_headers(stripped, policy=policy)
    return buf.getvalue()


def _flatten_utf8(msg: email.message.Message) -> bytes:
    try:
        return _flatten(msg, utf8=True)
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            "the message has non-ASCII text with no charset or transfer encoding (e.g. parsed "
            "with message_from_string): parse it from bytes, or set the content with a charset"
        ) from exc


def prepare_message(
    msg: email.message.Message,
    *,
    sender: str | None = None,
    recipients: Sequence[str] | None = None,
) -> PreparedMessage:
    """Build the envelope and wire bytes for ``msg``.

    Args:
        msg: the message; ``EmailMessage`` or legacy ``Message``.
        sender: overrides the envelope sender derived from the headers.
        recipients: overrides the envelope recipients derived from the headers.

    Raises:
        InvalidInputError: the envelope cannot be derived (see :func:`envelope_from_message`),
            the message holds non-ASCII text the generator cannot encode, a header would inject
            lines or a NUL (see :mod:`mailsdk.flows.headers`), or the stdlib ``email`` package
            cannot handle the message.
    """
    try:
        check_message_headers(msg)
        with email_errors("the envelope cannot be derived from the headers"):
            return _prepare_checked(msg, sender, recipients)
    except MailError:
        raise
    except (TypeError, AttributeError, ValueError) as exc:
        # The generator fails this way on a payload of the wrong type (``set_payload(123)``):
        # a refusal of this one message, never a bare error out of a send or a run.
        raise InvalidInputError(
            f"the message cannot be flattened: {type(exc).__name__} (is every payload str, "
            "bytes or a list of messages?)"
        ) from exc


def _prepare_checked(
    msg: email.message.Message, sender: str | None, recipients: Sequence[str] | None
) -> PreparedMessage:
    if sender is None or recipients is None:
        # Derive only what the caller did not give: a message without To/Cc/Bcc is fine when
        # the recipients are passed explicitly (and likewise for the sender).
        prefix = resent_prefix(msg)
        sender = _sender_of(msg, prefix) if sender is None else sender
        recipients = _recipients_of(msg, prefix) if recipients is None else recipients
    envelope = Envelope(sender, tuple(recipients))
    international = any(needs_smtputf8(a) for a in (envelope.sender, *envelope.recipients))
    # Non-ASCII headers of an ASCII envelope are RFC 2047-encoded by the generator; only an
    # international envelope (or a policy that already says utf8) puts raw UTF-8 in headers.
    try:
        data = _flatten(msg, utf8=international)
    except UnicodeEncodeError:
        # Headers parsed from a str (message_from_string) keep raw non-ASCII text that the
        # ASCII generator cannot write; RFC 6532 (SMTPUTF8) is the faithful form, exactly what
        # message_from_bytes of the same text gives.
        data = _flatten_utf8(msg)
    if not data.startswith(b"\r\n"):  # the header block actually written, checked once more
        check_header_block(data[: data.find(b"\r\n\r\n") + 2])
    smtputf8 = international or _has_raw_utf8_headers(data)
    return PreparedMessage(envelope, data, smtputf8, _eight_bit(data))


def _has_raw_utf8_headers(data: bytes) -> bool:
    head, _sep, _body = data.partition(b"\r\n\r\n")
    return _eight_bit(head)


def _eight_bit(data: bytes) -> bool:
    return not data.isascii()


class RawMemo:
    """The last raw message a run prepared, with what was found of it (:func:`prepare_raw`'s
    ``memo``): a run that sends one message to many envelopes (a list, a newsletter) gives the
    same ``bytes`` object again and again, and bytes cannot change, so its content is
    canonicalised and checked once. Only by identity, never by value; only exact ``bytes`` (a
    bytearray given again may hold other content) of at most 256 KiB. It lives as long as its
    run (``send_many``), so no message is kept once the run is over.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[bytes, bytes, bool, bytes | None] | None = None


def prepare_raw(
    sender: str,
    recipients: Sequence[str],
    message: bytes | str,
    *,
    memo: RawMemo | None = None,
) -> PreparedMessage:
    """Prepare a raw message (``sendmail``): ``str`` is encoded as UTF-8 when needed, and line
    endings are canonicalised to CRLF (unlike smtplib, bytes are canonicalised too).

    The caller decides on SMTPUTF8 for raw messages: it is flagged only when an envelope
    address is non-ASCII. With a ``memo`` (:class:`RawMemo`), the same message prepared again
    reuses the content found the last time.
    """
    if isinstance(message, str):
        message = message.encode("utf-8")
    last = memo.last if memo is not None else None
    if last is not None and last[0] is message:
        _source, data, eight_bit, original = last
    else:
        data = canonicalize_line_endings(message)
        check_raw_header_block(data)
        original = message if data != message else None
        eight_bit = _eight_bit(data)
        if memo is not None and type(message) is bytes and len(message) <= _REMEMBERED_RAW:
            memo.last = (message, data, eight_bit, original)
    # needs_smtputf8 for each address, without a generator (this runs for every message).
    smtputf8 = not sender.isascii() or not all(map(str.isascii, recipients))
    return PreparedMessage(
        Envelope(sender, tuple(recipients)),
        data,
        smtputf8,
        eight_bit,
        original=original,
        canonical=True,
    )


_REMEMBERED_RAW: typing.Final = 256 * 1024  # the largest message a RawMemo keeps
