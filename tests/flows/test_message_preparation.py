"""Message preparation edge cases: str-parsed messages, queue id forms, chunk size validation."""

from __future__ import annotations

import email
import email.message
import email.policy
import typing

import pytest

import mailsdk
from mailsdk import (
    InvalidInputError,
)


def test_str_parsed_message_with_utf8_headers_is_prepared_with_smtputf8() -> None:
    from mailsdk.flows import prepare_message

    msg = email.message_from_string(
        "From: Jörg <j@example.org>\nTo: z@example.com\nSubject: héllo\n\nbody\n",
        policy=email.policy.default,
    )
    prepared = prepare_message(msg)
    assert prepared.smtputf8
    assert prepared.data.startswith("From: Jörg <j@example.org>\r\n".encode())


@pytest.mark.parametrize("policy", [email.policy.default, email.policy.compat32])
def test_undecodable_str_body_is_an_invalid_input_error(policy: email.policy.Policy) -> None:
    from mailsdk.flows import prepare_message

    msg = email.message_from_string(
        "From: j@example.org\nTo: z@example.com\n\nbödy\n", policy=policy
    )
    with pytest.raises(InvalidInputError):
        prepare_message(msg)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0.0 x3KFaQ8e012345 Message accepted for delivery", "x3KFaQ8e012345"),
        ("x3KFaQ8e012345 Message accepted for delivery", "x3KFaQ8e012345"),
        ("2.0.0 Ok: queued as 4Xyz", "4Xyz"),
        ("OK id=1abc-XYZ", "1abc-XYZ"),
        ("2.0.0 Ok", None),
        ("Message accepted", None),
    ],
)
def test_queue_id_forms(text: str, expected: str | None) -> None:
    result = mailsdk.SendResult(
        sender="a@example.org",
        accepted=("b@example.com",),
        reply=mailsdk.Reply.build(250, text),
        size=1,
    )
    assert result.queue_id == expected


def test_non_positive_chunk_size_is_refused_when_the_options_are_built() -> None:
    from mailsdk.flows import TransactionOptions

    with pytest.raises(mailsdk.ConfigurationError):
        TransactionOptions(chunk_size=0)


def _int_payload() -> email.message.Message:
    msg = email.message.Message()
    msg["From"] = "a@x.test"
    msg["To"] = "b@y.test"
    msg.set_payload(123)  # type: ignore[arg-type]
    return msg


def _multipart_of_str() -> email.message.Message:
    msg = email.message.Message()
    msg["From"] = "a@x.test"
    msg["To"] = "b@y.test"
    msg.set_payload(["not a message"])  # type: ignore[arg-type]
    msg.set_type("multipart/mixed")
    return msg


@pytest.mark.parametrize("build", [_int_payload, _multipart_of_str])
def test_a_payload_of_the_wrong_type_is_invalid_input_not_an_attribute_error(
    build: typing.Callable[[], email.message.Message],
) -> None:
    # The stdlib generator fails with AttributeError on these; out of send_many that bare
    # error ended the run with the messages in flight unreported.
    from mailsdk.flows import prepare_message

    with pytest.raises(mailsdk.InvalidInputError, match="cannot be flattened"):
        prepare_message(build())
