"""Envelope derivation (smtplib's send_message rules) and flattening."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from mailsdk.errors import InvalidInputError
from mailsdk.flows import prepare_message, prepare_raw
from mailsdk.flows.envelope import RawMemo


def message(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("hello\n")
    return msg


def test_sender_then_from_and_all_recipient_fields() -> None:
    msg = message(
        From="a@example.org",
        Sender="s@example.org",
        To="b@example.com",
        Cc="c@example.com",
        Bcc="d@example.com",
    )
    prepared = prepare_message(msg)
    assert prepared.envelope.sender == "s@example.org"
    assert prepared.envelope.recipients == ("b@example.com", "d@example.com", "c@example.com")
    assert b"d@example.com" not in prepared.data  # Bcc never transmitted
    assert b"\r\n" in prepared.data
    assert b"\n" not in prepared.data.replace(b"\r\n", b"")


def test_last_resent_block_wins_and_resent_bcc_is_stripped() -> None:
    msg = message(
        From="a@example.org", To="b@example.com", Resent_Date="Mon, 1 Jan 2024 00:00:00 +0000"
    )
    msg["Resent-From"] = "r@example.org"
    msg["Resent-To"] = "rt@example.com"
    msg["Resent-Bcc"] = "rb@example.com"
    prepared = prepare_message(msg)
    assert prepared.envelope.sender == "r@example.org"
    assert prepared.envelope.recipients == ("rt@example.com", "rb@example.com")
    assert b"rb@example.com" not in prepared.data


def test_two_resent_blocks_are_ambiguous() -> None:
    msg = message(From="a@example.org", To="b@example.com")
    msg["Resent-Date"] = "Mon, 1 Jan 2024 00:00:00 +0000"
    msg["Resent-Date"] = "Tue, 2 Jan 2024 00:00:00 +0000"
    with pytest.raises(InvalidInputError):
        prepare_message(msg)


def test_explicit_recipients_need_no_recipient_headers() -> None:
    msg = message(From="a@example.org")
    prepared = prepare_message(msg, recipients=["x@example.com"])
    assert prepared.envelope.recipients == ("x@example.com",)
    assert prepared.envelope.sender == "a@example.org"


def test_explicit_sender_needs_no_from_header() -> None:
    msg = message(To="b@example.com")
    prepared = prepare_message(msg, sender="bounce@example.org")
    assert prepared.envelope.sender == "bounce@example.org"


def test_missing_envelope_parts_are_typed_errors() -> None:
    with pytest.raises(InvalidInputError):
        prepare_message(message(To="b@example.com"))
    with pytest.raises(InvalidInputError):
        prepare_message(message(From="a@example.org"))


def test_international_address_needs_smtputf8_and_raw_utf8_headers() -> None:
    msg = message(From="a@example.org", To="josé@exámple.com", Subject="café")
    prepared = prepare_message(msg)
    assert prepared.smtputf8
    assert "josé@exámple.com".encode() in prepared.data


def test_non_ascii_headers_with_ascii_envelope_are_encoded_words() -> None:
    prepared = prepare_message(message(From="a@example.org", To="b@example.com", Subject="café"))
    assert not prepared.smtputf8
    assert b"=?utf-8?" in prepared.data.lower()


def test_raw_messages_are_canonicalised() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], b"Subject: x\n\nline1\rline2\n")
    assert prepared.data == b"Subject: x\r\n\r\nline1\r\nline2\r\n"
    assert not prepared.eight_bit
    assert prepare_raw("a@example.org", ["b@example.com"], "é").eight_bit


def test_the_same_raw_message_is_prepared_once_for_many_envelopes() -> None:
    message = b"Subject: s\nFrom: a@example.com\n\nline one\nline two\n"
    memo = RawMemo()
    first = prepare_raw("a@example.com", ["b@example.com"], message, memo=memo)
    second = prepare_raw("c@example.com", ["d@example.com", "e@example.com"], message, memo=memo)
    assert second.data is first.data  # canonicalised once, for the same bytes object
    assert second.data == b"Subject: s\r\nFrom: a@example.com\r\n\r\nline one\r\nline two\r\n"
    assert second.envelope.sender == "c@example.com"
    assert second.envelope.recipients == ("d@example.com", "e@example.com")
    assert second.original is first.original is message


def test_an_equal_but_different_raw_message_is_prepared_on_its_own() -> None:
    # Remembered by identity only: equal bytes from elsewhere are canonicalised again, and a
    # different message after a remembered one never gets the remembered content.
    memo = RawMemo()
    one = prepare_raw("a@x.example", ["b@x.example"], b"Subject: one\n\nbody\n", memo=memo)
    two = prepare_raw("a@x.example", ["b@x.example"], b"Subject: two\n\nbody\n", memo=memo)
    assert one.data == b"Subject: one\r\n\r\nbody\r\n"
    assert two.data == b"Subject: two\r\n\r\nbody\r\n"


def test_a_raw_message_refused_once_is_refused_every_time() -> None:
    bad = b"Subject: x\x00y\r\n\r\nbody\r\n"  # a NUL in the headers
    memo = RawMemo()
    for _ in range(2):  # a refusal is never remembered as a prepared message
        with pytest.raises(InvalidInputError):
            prepare_raw("a@x.example", ["b@x.example"], bad, memo=memo)
    assert memo.last is None


def test_a_mutable_buffer_prepared_again_gets_its_new_content() -> None:
    # Only an exact bytes object cannot change: a bytearray (or anything else that is not
    # exactly bytes) given again after it changed must be prepared from what it holds now.
    buffer = bytearray(b"Subject: one\n\nfirst body\n")
    memo = RawMemo()
    first = prepare_raw("a@x.example", ["b@x.example"], buffer, memo=memo)  # type: ignore[arg-type]
    buffer[:] = b"Subject: two\n\nsecond body \xc3\xa9\n"
    second = prepare_raw("a@x.example", ["b@x.example"], buffer, memo=memo)  # type: ignore[arg-type]
    assert first.data == b"Subject: one\r\n\r\nfirst body\r\n"
    assert second.data == b"Subject: two\r\n\r\nsecond body \xc3\xa9\r\n"
    assert second.eight_bit


def test_without_a_memo_nothing_is_remembered_between_calls() -> None:
    # A single message (send_message, sendmail) keeps nothing once it is prepared: the memo
    # belongs to a send_many run and goes with it.
    message = b"Subject: s\n\nbody\n"
    first = prepare_raw("a@x.example", ["b@x.example"], message)
    second = prepare_raw("a@x.example", ["b@x.example"], message)
    assert first.data == second.data and first.data is not second.data
