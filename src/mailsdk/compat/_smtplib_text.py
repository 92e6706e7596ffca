"""Text and byte decisions for ``mailsdk.compat.smtplib``: address quoting, command lines, DATA
payloads, EHLO features and the ``send_message`` envelope.

Layer: L7 (compat, private). May import ``mailsdk.protocol``, ``mailsdk.esmtp``, L0 and the
standard library ``email`` package; must never import ``mailsdk.api`` or any I/O module.

The protocol decisions come from the mailsdk layers: the CR/LF injection guard and line
serialisation from :class:`mailsdk.protocol.Raw`, dot-stuffing and line-ending canonicalisation
from :mod:`mailsdk.protocol.body`, EHLO parsing from :func:`mailsdk.esmtp.parse_ehlo`, the
SMTPUTF8 decision from :func:`mailsdk.protocol.needs_smtputf8`. Only what smtplib users can
observe (lower-case verbs, ``<addr>`` quoting of anything parseaddr accepts, the feature dict)
is shaped like smtplib here.
"""

from __future__ import annotations

import copy
import email.generator
import email.message
import email.policy
import email.utils
import io
import re
import typing
from collections.abc import Sequence

from mailsdk.errors import InvalidInputError
from mailsdk.esmtp import ExtensionRegistry, parse_ehlo
from mailsdk.flows.envelope import resent_prefix
from mailsdk.protocol import (
    Raw,
    Reply,
    canonicalize_line_endings,
    check_text,
    encode_data,
    needs_smtputf8,
)

__all__ = [
    "addr_only",
    "checked_address",
    "command_line",
    "data_payload",
    "envelope_recipients",
    "envelope_sender",
    "esmtp_features",
    "flatten_message",
    "message_bytes",
    "needs_international",
    "quoteaddr",
    "quotedata",
    "resent_prefix",
]

# smtplib's reading of an extension line, used only for lines parse_ehlo could not read.
_FEATURE_RE: typing.Final = re.compile(r"(?P<feature>[A-Za-z0-9][A-Za-z0-9\-]*) ?")


def quoteaddr(addrstring: str) -> str:
    """Quote an address as an RFC 5321 path: ``"Name <a@b>"`` -> ``"<a@b>"``.

    Anything ``email.utils.parseaddr`` cannot parse is used as is (bracketed when it is not
    already), exactly like smtplib.

    Args:
        addrstring: the address as given.

    Returns:
        The ``<...>`` path.
    """
    displayname, addr = email.utils.parseaddr(addrstring)
    if (displayname, addr) == ("", ""):
        if addrstring.strip().startswith("<"):
            return addrstring
        return f"<{addrstring}>"
    return f"<{addr}>"


def addr_only(addrstring: str) -> str:
    """Return the bare address parsed from ``addrstring`` (or ``addrstring`` if unparseable)."""
    displayname, addr = email.utils.parseaddr(addrstring)
    if (displayname, addr) == ("", ""):
        return addrstring
    return addr


def quotedata(data: str) -> str:
    """Canonicalise line ends to CRLF and double a leading ``.`` on every line.

    Uses :func:`mailsdk.protocol.encode_data` (RFC 5321 §4.5.2) without its terminator.

    Args:
        data: the message text.

    Returns:
        The quoted text (no end-of-data marker added).
    """
    raw = data.encode("utf-8", "surrogatepass")
    wire = encode_data(raw)[:-3]  # drop the ".\r\n" terminator
    if raw and not raw.endswith((b"\r", b"\n")):
        wire = wire[:-2]  # and the CRLF the encoder adds to an unterminated last line
    return wire.decode("utf-8", "surrogatepass")


def _escaped(line: str) -> str:
    return line.replace("\n", "\\n").replace("\r", "\\r")


def checked_address(address: str, *, what: str = "address") -> str:
    """Refuse CR/LF in an address *before* ``parseaddr`` silently drops what follows it.

    smtplib quotes ``"a@b\\r\\nRSET"`` as ``<a@b>`` and sends it; a drop-in must not change
    the meaning of a command behind the caller's back, so this is an error (RFC 5321 §2.3.8).

    Raises:
        InvalidInputError: (a ``ValueError``) the address contains CR or LF (``what`` names it in
            the message).
    """
    if "\r" in address or "\n" in address:
        raise InvalidInputError(
            f"{what} contains prohibited newline characters: {_escaped(address)}"
        )
    return address


def command_line(line: str, encoding: str, *, secret: bool = False) -> str:
    """Validate one command line and return it with its CRLF, ready for ``SMTP.send``.

    The line goes through :class:`mailsdk.protocol.Raw`, mailsdk's command serialisation with
    the injection guard; the text returned is exactly what ``Raw.to_bytes()`` puts on the wire.

    Args:
        line: the command and its arguments.
        encoding: ``"ascii"`` (smtplib's default) or ``"utf-8"`` (after ``SMTPUTF8``).
        secret: the line carries credentials; never quote it in an error message.

    Returns:
        ``line + "\r\n"``.

    Raises:
        InvalidInputError: (a ``ValueError``) CR or LF in the line (command injection,
            RFC 5321 §2.3.8), or NUL / another control character.
        UnicodeEncodeError: non-ASCII text while SMTPUTF8 is not in use (as smtplib).
    """
    if "\r" in line or "\n" in line:
        shown = "" if secret else f": {_escaped(line)}"
        raise InvalidInputError(
            f"command and arguments contain prohibited newline characters{shown}"
        )
    line.encode(encoding)
    if not line.strip():
        # An empty line is a legal empty SASL response (RFC 4954 §4); Raw refuses empty commands.
        return check_text(line, "command line") + "\r\n"
    return Raw(line).to_bytes().decode("utf-8")


def message_bytes(msg: str | bytes | bytearray) -> bytes:
    """Return the message as bytes with canonical CRLF line ends (not yet dot-stuffed).

    ``str`` must be ASCII (``UnicodeEncodeError`` otherwise, as smtplib). Unlike smtplib, bytes
    are canonicalised too: a bare CR or LF never reaches the server (SMTP smuggling defence).
    """
    raw = msg.encode("ascii") if isinstance(msg, str) else bytes(msg)
    return canonicalize_line_endings(raw)


def data_payload(msg: str | bytes | bytearray) -> bytes:
    """Everything sent after the 354 reply: canonical, dot-stuffed body plus ``.\\r\\n``."""
    return encode_data(message_bytes(msg))


def esmtp_features(ehlo_message: bytes) -> dict[str, str]:
    """Build smtplib's ``esmtp_features`` dict from a 250 EHLO/LHLO reply text.

    Each extension line is parsed by :func:`mailsdk.esmtp.parse_ehlo` and its keyword
    lower-cased. The dict keeps smtplib's shape: line order, the last occurrence of a repeated
    keyword wins, and ``auth`` collects the mechanisms of every ``AUTH`` and legacy ``AUTH=``
    line, each with a leading space. Lines parse_ehlo cannot read are matched with smtplib's
    pattern, so nothing smtplib saw goes missing.

    Args:
        ehlo_message: the reply text (lines joined with ``\\n``), first line = server name.

    Returns:
        keyword (lower case) -> parameters.
    """
    registry = ExtensionRegistry.default()
    lines = ehlo_message.split(b"\n")
    features: dict[str, str] = {}
    for line in lines[1:]:
        caps = parse_ehlo(Reply(250, (lines[0], line)), registry)
        if caps.keywords:
            feature, params = caps.keywords[0].lower(), caps.raw[caps.keywords[0]]
        else:
            m = _FEATURE_RE.match(line.decode("latin-1"))
            if m is None:
                continue
            feature, params = m.group("feature").lower(), m.string[m.end("feature") :].strip()
        if feature == "auth":
            features["auth"] = features.get("auth", "") + " " + params
        else:
            features[feature] = params
    return features


def envelope_sender(msg: email.message.Message, prefix: str) -> str:
    """The envelope sender: ``(Resent-)Sender`` if present, else ``(Resent-)From``."""
    field = prefix + "Sender" if prefix + "Sender" in msg else prefix + "From"
    return email.utils.getaddresses([msg[field]])[0][1]


def envelope_recipients(msg: email.message.Message, prefix: str) -> list[str]:
    """The envelope recipients from ``(Resent-)To``, ``Bcc`` and ``Cc``, in that order."""
    fields = [msg[prefix + name] for name in ("To", "Bcc", "Cc")]
    return [addr for _name, addr in email.utils.getaddresses([f for f in fields if f is not None])]


def needs_international(from_addr: str, to_addrs: str | Sequence[str]) -> bool:
    """True when an envelope address is non-ASCII, so SMTPUTF8 is required (RFC 6531 §3.2)."""
    addresses = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
    return any(needs_smtputf8(a) for a in (from_addr, *addresses))


def flatten_message(msg: email.message.Message, *, utf8: bool) -> bytes:
    """Serialise ``msg`` with CRLF line ends, ``Bcc``/``Resent-Bcc`` removed (never sent).

    Args:
        msg: the message (left unchanged: a shallow copy is stripped).
        utf8: flatten with the message policy's ``utf8=True`` (RFC 6532 headers).
    """
    stripped = copy.copy(msg)
    del stripped["Bcc"]
    del stripped["Resent-Bcc"]
    with io.BytesIO() as buffer:
        if utf8:
            # RFC 6532 headers. A legacy (compat32) message has no utf8 option: smtplib raised
            # TypeError there; the SMTPUTF8 policy serialises it instead.
            policy = msg.policy
            if isinstance(policy, email.policy.EmailPolicy):
                policy = policy.clone(utf8=True)
            else:
                policy = email.policy.SMTPUTF8
            # typeshed types a generator made with an EmailPolicy as taking only EmailMessage;
            # the stdlib flattens any Message with it.
            generator = typing.cast(
                "email.generator.BytesGenerator[email.message.Message]",
                email.generator.BytesGenerator(buffer, policy=policy),
            )
            generator.flatten(stripped, linesep="\r\n")
        else:
            email.generator.BytesGenerator(buffer).flatten(stripped, linesep="\r\n")
        return buffer.getvalue()
