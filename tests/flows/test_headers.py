"""The header injection guard (``mailsdk.flows.headers``) and its use by ``prepare_message``.

Every case here either reached the wire or escaped as a bare stdlib exception before the guard:
a CR/LF in a value that adds a header line (and an envelope recipient), a trailing CRLF that
ends the header block early, a NUL, a colon-less line. Each must raise ``InvalidInputError``
naming the header, under every policy.
"""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest

from mailsdk import InvalidInputError
from mailsdk.flows import prepare_message, prepare_raw
from mailsdk.flows.headers import (
    check_header_block,
    check_message_headers,
    check_raw_header_block,
    email_errors,
)

POLICIES = {
    "compat32": email.policy.compat32,
    "default": email.policy.default,
    "SMTP": email.policy.SMTP,
    "SMTPUTF8": email.policy.SMTPUTF8,
}


def legacy(**headers: str) -> email.message.Message:
    msg = email.message.Message()
    msg["From"] = "a@example.org"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_payload("body\n")
    return msg


def modern(policy: email.policy.Policy, **raw: str) -> email.message.Message:
    """A message whose extra headers are stored raw (``set_raw``: what a parsed or copied
    header can hold, and what header objects bypassing the policy checks end up as)."""
    msg = email.message.EmailMessage(policy=policy)  # type: ignore[arg-type]
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com"
    for name, value in raw.items():
        msg.set_raw(name.replace("_", "-"), value)
    msg.set_payload("body\n")
    return msg


# -- the pure check ---------------------------------------------------------------------------------


def test_a_well_formed_block_passes() -> None:
    check_header_block(b"From: a@example.org\r\nTo: b@example.com,\r\n c@example.com\r\n")
    check_header_block(b"")


@pytest.mark.parametrize(
    ("block", "named", "why"),
    [
        (b"To: b@example.com\r\nBcc c@evil.example\r\n", "'To'", "not a header field"),
        (b"Subject: hi\r\n\r\nX-After: 1\r\n", "'Subject'", "empty line"),
        (b"Subject: hi\r\n \t\r\nX-After: 1\r\n", "'Subject'", "blank line"),
        (b"Subject: h\x00i\r\n", "'Subject'", "NUL"),
        (b"Subject: a\rb\r\n", "'Subject'", "bare CR or LF"),
        (b"Subject: a\nb\r\n", "'Subject'", "bare CR or LF"),
        (b"Subject: hi\r\n\tmore\x00\r\n", "'Subject'", "NUL"),
        (b" leading: continuation\r\n", "header block", "continuation"),
        (b"X Bad: v\r\n", "header name", "not a header field"),
        (b"Subject: no line end", "header block", "CRLF"),
    ],
)
def test_bad_blocks_are_refused_naming_the_header(block: bytes, named: str, why: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_header_block(block)
    assert named in str(info.value)
    assert why in str(info.value)


def test_raw_headers_refuse_nul_only_in_the_header_section() -> None:
    with pytest.raises(InvalidInputError, match="NUL"):
        check_raw_header_block(b"Subject: h\x00i\r\n\r\nbody\r\n")
    check_raw_header_block(b"Subject: hi\r\n\r\nbinary \x00 body\r\n")
    check_raw_header_block(b"\r\nno headers \x00\r\n")


def test_email_errors_become_invalid_input_without_the_value() -> None:
    with pytest.raises(InvalidInputError, match="doing it: HeaderParseError") as info:
        with email_errors("doing it"):
            raise email.errors.HeaderParseError("value 'secret-ish\\r\\n'")
    assert "secret-ish" not in str(info.value)
    assert isinstance(info.value.__cause__, email.errors.HeaderParseError)


# -- messages ---------------------------------------------------------------------------------------


def test_crlf_and_a_second_address_in_to_never_adds_a_recipient() -> None:
    # compat32 used to escape as a bare HeaderParseError (embedded header) ...
    with pytest.raises(InvalidInputError, match="'To'"):
        prepare_message(legacy(To="b@example.com\r\nBcc: c@evil.example"))
    # ... and a bare LF silently added c@evil.example to the envelope and a header line.
    with pytest.raises(InvalidInputError, match="'To'"):
        prepare_message(legacy(To="b@example.com\nc@evil.example"))


def test_a_folded_value_is_not_injection() -> None:
    prepared = prepare_message(legacy(To="b@example.com,\r\n c@example.com"))
    assert prepared.envelope.recipients == ("b@example.com", "c@example.com")


@pytest.mark.parametrize("policy", list(POLICIES.values()), ids=list(POLICIES))
@pytest.mark.parametrize(
    "value",
    ["hi\r\n\r\n", "hi\n\nX-Moved: body", "hi\r\nBcc: c@evil.example", "h\x00i", "hi\r\n \r\n"],
    ids=repr,
)
def test_no_policy_lets_a_value_change_the_header_block(
    policy: email.policy.Policy, value: str
) -> None:
    # Either refused naming the header, or written harmlessly (compat32 drops a trailing CRLF):
    # never an early end of the headers, an extra header line or a NUL on the wire.
    msg = modern(policy, Subject=value, X_After="1")
    try:
        prepared = prepare_message(msg)
    except InvalidInputError as exc:
        refusal = str(exc)
        assert "'Subject'" in refusal
        return
    head, _sep, body = prepared.data.partition(b"\r\n\r\n")
    names = [line.split(b":")[0] for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    assert names == [b"From", b"To", b"Subject", b"X-After"]
    assert body == b"body\r\n"
    assert b"\x00" not in prepared.data


@pytest.mark.parametrize("policy", [p for n, p in POLICIES.items() if n != "compat32"])
def test_email_policies_refuse_a_trailing_crlf(policy: email.policy.Policy) -> None:
    # The stdlib writes "Subject: hi\r\n\r\nX-After: 1": X-After would become body text.
    with pytest.raises(InvalidInputError, match=r"'Subject'.*empty line"):
        prepare_message(modern(policy, Subject="hi\r\n\r\n", X_After="1"))


@pytest.mark.parametrize("value", ["hi\n\nmoved", "h\x00i", "hi\r\nX-Evil: 1"], ids=repr)
def test_legacy_messages_refuse_them_too(value: str) -> None:
    with pytest.raises(InvalidInputError, match="'Subject'"):
        prepare_message(legacy(To="b@example.com", Subject=value))


def test_a_nul_in_an_address_header_never_reaches_the_envelope() -> None:
    with pytest.raises(InvalidInputError, match=r"'To'.*NUL"):
        prepare_message(legacy(To="b@example.com\x00"))


def test_parsed_messages_with_a_nul_are_refused() -> None:
    msg = email.message_from_bytes(
        b"From: a@example.org\r\nTo: b@example.com\r\nSubject: s\x00x\r\n\r\nbody\r\n",
        policy=email.policy.default,
    )
    with pytest.raises(InvalidInputError, match=r"'Subject'.*NUL"):
        prepare_message(msg)


def test_headers_of_every_part_are_checked() -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com"
    msg.set_content("text")
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="f")
    attachment = next(iter(msg.iter_attachments()))
    attachment.set_raw("X-Part", "v\r\nX-Injected: 1")
    with pytest.raises(InvalidInputError, match="'X-Part'"):
        prepare_message(msg)


def test_bcc_is_checked_although_it_is_never_sent() -> None:
    with pytest.raises(InvalidInputError, match="'Bcc'"):
        prepare_message(legacy(To="b@example.com", Bcc="c@example.com\nd@evil.example"))


def test_bad_header_names_are_refused() -> None:
    msg = legacy(To="b@example.com")
    msg["X-Bad Name"] = "v"
    with pytest.raises(InvalidInputError, match="invalid header name"):
        check_message_headers(msg)


def test_raw_messages_with_a_nul_in_the_headers_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="NUL"):
        prepare_raw("a@example.org", ["b@example.com"], "Subject: h\x00i\n\nbody\n")
    with pytest.raises(InvalidInputError, match="NUL"):
        prepare_raw("a@example.org", ["b@example.com"], b"Subject: h\x00i\r\n\r\nbody\r\n")


def test_well_formed_messages_are_unchanged() -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "José <jose@example.org>"
    msg["To"] = "b@example.com"
    msg["Subject"] = "Grüße " + "long words " * 20
    msg.set_content("body\n")
    prepared = prepare_message(msg)
    assert prepared.data.startswith(b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.org>\r\n")
    assert b"\r\n\r\nbody\r\n" in prepared.data


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
@pytest.mark.parametrize("header", ["To", "Subject"])
def test_a_legacy_message_is_checked_as_the_utf8_policy_writes_it(
    separator: str, header: str
) -> None:
    # An international envelope flattens a compat32 message with SMTPUTF8, which folds at
    # U+2028 where compat32 RFC 2047-encodes: checked with compat32, the line got through.
    msg = email.message.Message()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com"
    msg[header] = f"b@example.com{separator}Bcc: c@evil.example"
    msg.set_payload("body\n")
    with pytest.raises(InvalidInputError, match=f"'{header}'"):
        prepare_message(msg, sender="jösé@example.org", recipients=["b@example.com"])
